"""`POST /api/webhook/{secret}`: check the request, publish it raw, answer 202 after the ack.

Checks, in order, each a small function below: the secret names an active tenant (404 / 403),
the tenant is within its rate limit (429 + Retry-After), the body fits the tenant's cap and
arrives in time (413 / 408), the signature verifies as the tenant's mode demands (401), a signed
`webhook-id` was not delivered before (200 with the first `event_id`; 409 while that first
delivery is still being stored), the content type is one we read (415), the body parses and
validates (400 / 422, naming the field). Only then is the body
published to `webhooks.raw`, and the 202 with its `event_id` is sent only after Kafka
acknowledged it on every in-sync replica. Kafka unreachable or slow: 503 with `Retry-After`.
Every answer after the rate-limit check carries the RateLimit headers. Refusals are published to
`webhooks.audit` (reason, size; never the body) for the audit log.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import Counter, Histogram

from ingest import answers, precheck, signatures
from ingest.answers import expected_commands
from ingest.api_models import (
    TildaCheckOk,
    WebhookAccepted,
    WebhookDuplicate,
    WebhookProcessed,
)
from ingest.attempts import client_ip, too_many
from ingest.context import (
    CUSTOMERS,
    LIMITER,
    ORDER_ROUTES,
    OUTCOMES,
    REPLAY,
    SETTINGS,
    TENANTS,
    UNKNOWN_SECRETS,
)
from ingest.limits import LimitExceeded, body_cap, read_body
from ingest.openapi import Param, Resp, documented, errors
from ingest.outcomes import prefer_wait
from ingest.publish import audit, publish, raw_record
from ingest.ratelimit import Decision, Quota
from ingest.replay import PENDING
from ingest.responses import error, json_response
from kopilka.core.ids import new_event_id
from kopilka.core.logging import get_logger
from kopilka.directory.tenants import DATABASE_DOWN, SECRET_PREFIX, Tenant
from schemas.actions import WEBHOOKS
from schemas.inbound import InboundError, ParsedWebhook, TildaOrder, TildaOrders, parse_webhook
from schemas.messages import AuditRecord
from schemas.routing import raw_key
from schemas.text_checks import shown

log = get_logger(__name__)

REQUESTS = Counter("kopilka_webhook_requests_total", "Webhook requests by outcome", ["status"])
ACCEPTED = Counter(
    "kopilka_webhooks_accepted_total", "Webhooks accepted (202/200), by action", ["action"]
)
LATENCY = Histogram(
    "kopilka_webhook_seconds",
    "Webhook handling time",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
_BY_STATUS: dict = {}
_BY_ACTION: dict = {}


def _retry_later(request: web.Request, code: str, reason: str) -> web.Response:
    retry_after = str(request.app[SETTINGS].retry_after_s)
    return error(503, code, reason, headers={"Retry-After": retry_after})


_LIMITED = {"RateLimit": False, "RateLimit-Policy": False}


@documented(
    "Receive a shop's webhook",
    tags=["webhooks"],
    description="Standard JSON or any Tilda variant, at the shop's secret URL. Answered 202 with "
    "an event_id once Kafka has stored the body. Signatures (Standard Webhooks headers or "
    "X-Signature) are checked as the shop's signature mode demands; a signed webhook-id seen "
    "before is answered 200 'duplicate'. Rate limited per shop (RateLimit headers).",
    parameters=[
        Param("secret", "path", "the shop's webhook secret (whk_…)"),
        Param("webhook-id", "header", "Standard Webhooks: the delivery's unique id"),
        Param("webhook-timestamp", "header", "Standard Webhooks: Unix seconds of signing"),
        Param("webhook-signature", "header", "Standard Webhooks: 'v1,<base64>' signatures"),
        Param("X-Signature", "header", "hex HMAC-SHA256 of the raw body"),
        Param(
            "Prefer",
            "header",
            "'wait=N' (RFC 7240): answer 200 with the outcome once processed, within N s",
        ),
    ],
    request={
        "application/json": [*WEBHOOKS.values(), TildaOrder, TildaOrders],
        "application/x-www-form-urlencoded": TildaOrder,
    },
    responses={
        200: Resp(
            "processed within Prefer: wait, Tilda's connection check, or a repeated webhook-id",
            [WebhookProcessed, WebhookDuplicate, TildaCheckOk],
            headers=_LIMITED,
        ),
        202: Resp("stored; processing follows", WebhookAccepted, headers=_LIMITED),
        **errors(400, 401, 408, 413, 415, 422, headers=_LIMITED),
        **errors(409, headers={**_LIMITED, "Retry-After": True}),
        **errors(403, 404),
        **errors(429, headers={**_LIMITED, "Retry-After": True}),
        **errors(503, headers={"Retry-After": True}),
    },
)
async def receive_webhook(request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    response = await _handle(request)
    counter = _BY_STATUS.get(response.status)
    if counter is None:  # labels() takes a lock and builds a key: once per status
        counter = _BY_STATUS[response.status] = REQUESTS.labels(str(response.status))
    counter.inc()
    LATENCY.observe(time.perf_counter() - started)
    return response


async def _handle(request: web.Request) -> web.StreamResponse:
    tenant = await _tenant(request)
    if isinstance(tenant, web.Response):
        return tenant
    limit = await _rate_limit(request, tenant)
    headers = limit.headers()
    if not limit.allowed:
        return error(
            429,
            "rate_limited",
            f"over this shop's limit of {limit.quota.per_minute} requests per minute "
            f"(burst {limit.quota.burst}); retry in {limit.retry_after_s} s",
            headers=headers,
        )

    received_at = datetime.now(UTC)
    event_id = new_event_id()
    content_type = request.headers.get("Content-Type")
    odd_type = content_type is not None and not _printable_ascii(content_type)
    if odd_type:  # what the audit keeps of it: escaped, as the core can store it
        content_type = shown(content_type)

    def refuse(status: int, code: str, reason: str, field: str | None = None, size=None):
        audit(
            request,
            AuditRecord(
                event_id=event_id,
                tenant_id=tenant.id,
                received_at=received_at,
                status="rejected",
                http_status=status,
                code=code,
                field=field,
                reason=reason,
                content_type=content_type,
                body_bytes=size,
            ),
        )
        log.info(
            "webhook_refused",
            tenant_id=tenant.id,
            event_id=event_id,
            status=status,
            code=code,
            field=field,
        )
        return error(status, code, reason, field, headers=headers)

    if odd_type:
        reason = "the Content-Type header must be printable ASCII"
        return refuse(415, "unsupported_media_type", reason, "Content-Type")
    settings = request.app[SETTINGS]
    try:
        body = await read_body(request, body_cap(tenant, settings), settings.body_timeout_s)
    except LimitExceeded as exc:
        return refuse(exc.status, exc.code, exc.reason, size=exc.size)
    signed = _verify_signature(request, tenant, body)
    if isinstance(signed, signatures.Refused):
        return refuse(401, signed.code, signed.reason, signed.field, len(body))
    webhook_id = signed.webhook_id if isinstance(signed, signatures.Verified) else None
    if webhook_id is not None:
        replay = await _replayed(request, tenant, webhook_id, event_id, headers)
        if replay is not None:
            return replay
    try:
        parsed = parse_webhook(body, content_type, phone_region=tenant.phone_region)
    except InboundError as exc:
        await _release(request, tenant, webhook_id)
        return refuse(exc.status, exc.code, exc.reason, exc.field, len(body))
    if parsed.action == "tilda_test":
        await _release(request, tenant, webhook_id)  # nothing stored: nothing to de-duplicate
        return json_response({"status": "ok"}, headers=headers)
    if precheck.needed(parsed):
        try:
            async with asyncio.timeout(settings.edge_db_timeout_s):
                await precheck.check(request.app[CUSTOMERS], tenant, parsed)
        except InboundError as exc:
            await _release(request, tenant, webhook_id)
            return refuse(exc.status, exc.code, exc.reason, exc.field, len(body))
        except DATABASE_DOWN as exc:  # only this check needs the database: the shop retries it
            await _release(request, tenant, webhook_id)
            log.warning("precheck_unavailable", tenant_id=tenant.id, error=type(exc).__name__)
            reason = "cannot check the referrer now, retry later"
            return _retry_later(request, "unavailable", reason)

    wait_s = prefer_wait(request.headers.get("Prefer"), settings.max_prefer_wait_s)
    record = raw_record(
        body,
        event_id=event_id,
        tenant_id=tenant.id,
        received_at=received_at,
        content_type=content_type,
        wait=bool(wait_s),
    )
    waiter = request.app[OUTCOMES]
    pending = waiter.register(event_id, expected_commands(event_id, parsed)) if wait_s else None
    key = await _raw_key(request, tenant, parsed, event_id)
    refused = await publish(request, tenant.id, event_id, record, key, headers)
    if refused is not None:
        waiter.forget(event_id)
        await _release(request, tenant, webhook_id)
        return refused
    await request.app[ORDER_ROUTES].remember(tenant.id, parsed, key)  # before the 202
    if webhook_id is not None:
        await request.app[REPLAY].confirm(tenant.id, webhook_id, event_id)
    counter = _BY_ACTION.get(parsed.action)
    if counter is None:
        counter = _BY_ACTION[parsed.action] = ACCEPTED.labels(parsed.action)
    counter.inc()
    # DEBUG: a line per request cost 8 % of the ingress's CPU; each acceptance is already in
    # webhook_audit (with its event_id) and in kopilka_webhooks_accepted_total. Its
    # request_id is in the DEBUG line of every later stage (kopilka.core.logging).
    log.debug(
        "webhook_accepted",
        stage="ingress",
        tenant_id=tenant.id,
        request_id=event_id,
        action=parsed.action,
        items=len(parsed.purchases) or 1,
        refused_items=len(parsed.rejected),
        bytes=len(body),
        signature=signed.scheme if isinstance(signed, signatures.Verified) else None,
    )
    answer = answers.accepted(event_id, parsed)
    if pending is not None and await waiter.wait(event_id, pending, wait_s):
        outcomes = answers.with_outcomes(answer, event_id, parsed, pending.outcomes)
        return json_response(outcomes, headers=headers)
    return json_response(answer, status=202, headers=headers)


async def _raw_key(
    request: web.Request, tenant: Tenant, parsed: ParsedWebhook, event_id: str
) -> bytes:
    """The record's key (schemas.routing); a refund goes with its order's purchase or spend."""
    order_id = parsed.owner_order()
    if order_id is not None:
        route = await request.app[ORDER_ROUTES].route(tenant.id, order_id)
        if route is not None:
            return route
        owner = await precheck.refund_owner(
            request.app[CUSTOMERS], tenant, order_id, request.app[SETTINGS].edge_db_timeout_s
        )
        return raw_key(tenant.id, parsed, event_id, owner)
    return raw_key(tenant.id, parsed, event_id)


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _plausible(secret: str) -> bool:
    """Shaped like a secret Kopilka issues (`whk_` + 32 characters today; some room kept)."""
    return secret.startswith(SECRET_PREFIX) and 20 <= len(secret) <= 100


async def _tenant(request: web.Request) -> Tenant | web.Response:
    """The active tenant the URL's secret names, or the response refusing the request.

    A shop seen recently is answered from the cache, stale while Postgres is down. A secret
    not known here costs a query only when it is shaped like one and its client IP has not
    used up its budget of unknown secrets (429 then, before any query).
    """
    directory = request.app[TENANTS]
    guessers = request.app[UNKNOWN_SECRETS]
    secret, ip = request.match_info["secret"], client_ip(request)
    if not directory.knows(directory.secret_key(secret)):
        wait = guessers.blocked(ip)
        if wait is not None:
            return too_many(wait, "unknown webhook URLs")
    tenant = None
    if _plausible(secret):
        try:
            tenant = await directory.by_secret(secret)
        except DATABASE_DOWN as exc:
            log.warning("tenant_lookup_unavailable", error=type(exc).__name__)
            return _retry_later(request, "unavailable", "tenant directory unavailable, retry later")
    if tenant is None:
        wait = await guessers.failed(ip)
        if wait is not None:
            return too_many(wait, "unknown webhook URLs")
        return error(404, "unknown_webhook", "no webhook is registered at this URL")
    if not tenant.active:
        return error(403, "tenant_inactive", "this shop's webhook is disabled")
    return tenant


async def _rate_limit(request: web.Request, tenant: Tenant) -> Decision:
    """One request, one token, whatever the body carries (a batch counts once)."""
    settings = request.app[SETTINGS]
    per_minute = tenant.rate_limit_per_minute or settings.rate_limit_per_minute
    burst = tenant.rate_limit_burst or settings.rate_limit_burst or per_minute
    return await request.app[LIMITER].hit(tenant.id, Quota(per_minute, burst))


def _verify_signature(request: web.Request, tenant: Tenant, body: bytes) -> signatures.Verdict:
    return signatures.check(
        tenant.signature_mode,
        tenant.signing_secrets,
        request.headers,
        body,
        now=time.time(),
        tolerance_s=request.app[SETTINGS].signature_tolerance_s,
    )


async def _replayed(
    request: web.Request, tenant: Tenant, webhook_id: str, event_id: str, headers: dict
) -> web.Response | None:
    """None for a new webhook-id (claimed now); the answer to a repeat otherwise."""
    first = await request.app[REPLAY].claim(tenant.id, webhook_id, event_id)
    if first is None:
        return None
    if first.startswith(PENDING):
        return error(
            409,
            "delivery_in_progress",
            "a delivery with this webhook-id is being stored right now; retry shortly",
            "webhook-id",
            headers={**headers, "Retry-After": "1"},
        )
    log.info("webhook_replay", tenant_id=tenant.id, event_id=first)
    return json_response({"status": "duplicate", "event_id": first}, status=200, headers=headers)


async def _release(request: web.Request, tenant: Tenant, webhook_id: str | None) -> None:
    """A signed delivery that was not stored: let the sender's retry of its id go through."""
    if webhook_id is not None:
        await request.app[REPLAY].release(tenant.id, webhook_id)
