"""`POST /api/webhook/{secret}`: check the request, publish it raw, answer 202 after the ack.

Checks, in order: the secret names an active tenant (404 / 403), the body fits (413), the content
type is one we read (415), the body parses and validates (400 / 422, naming the field). Only then
is the body published to `webhooks.raw`, and the 202 with its `event_id` is sent only after Kafka
acknowledged it on every in-sync replica. Kafka unreachable or slow: 503 with `Retry-After`.
Refusals are published to `webhooks.audit` (reason, size; never the body) for the audit log.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from prometheus_client import Counter, Histogram

from ingest import answers, precheck
from ingest.answers import expected_commands
from ingest.context import BACKGROUND, CUSTOMERS, OUTCOMES, PRODUCER, SETTINGS, TENANTS
from ingest.outcomes import prefer_wait
from ingest.responses import error, json_response
from kopilka import topics
from kopilka.ids import new_event_id
from kopilka.logging import get_logger
from kopilka.tenants import Tenant
from schemas.inbound import InboundError, parse_webhook
from schemas.messages import AuditRecord, RawEnvelope

log = get_logger(__name__)

REQUESTS = Counter("kopilka_webhook_requests_total", "Webhook requests by outcome", ["status"])
LATENCY = Histogram(
    "kopilka_webhook_seconds",
    "Webhook handling time",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def _retry_later(request: web.Request, code: str, reason: str) -> web.Response:
    retry_after = str(request.app[SETTINGS].retry_after_s)
    return error(503, code, reason, headers={"Retry-After": retry_after})


async def receive_webhook(request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    response = await _handle(request)
    REQUESTS.labels(str(response.status)).inc()
    LATENCY.observe(time.perf_counter() - started)
    return response


async def _handle(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    try:
        tenant = await request.app[TENANTS].by_secret(request.match_info["secret"])
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        log.exception("tenant_lookup_failed")
        return _retry_later(request, "unavailable", "tenant directory unavailable, retry later")
    if tenant is None:
        return error(404, "unknown_webhook", "no webhook is registered at this URL")
    if not tenant.active:
        return error(403, "tenant_inactive", "this shop's webhook is disabled")

    received_at = datetime.now(UTC)
    event_id = new_event_id()
    content_type = request.headers.get("Content-Type")

    def refuse(status: int, code: str, reason: str, field: str | None = None, size=None):
        _audit(
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
        return error(status, code, reason, field)

    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        return refuse(
            413,
            "body_too_large",
            f"body exceeds {settings.max_body_bytes} bytes",
            size=request.content_length,
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return refuse(413, "body_too_large", f"body exceeds {settings.max_body_bytes} bytes")
    try:
        parsed = parse_webhook(body, content_type, phone_region=tenant.phone_region)
    except InboundError as exc:
        return refuse(exc.status, exc.code, exc.reason, exc.field, len(body))
    if parsed.action == "tilda_test":
        return json_response({"status": "ok"})
    try:
        await precheck.check(request.app[CUSTOMERS], tenant, parsed)
    except InboundError as exc:
        return refuse(exc.status, exc.code, exc.reason, exc.field, len(body))

    envelope = RawEnvelope.wrap(
        body,
        event_id=event_id,
        tenant_id=tenant.id,
        received_at=received_at,
        content_type=content_type,
    )
    wait_s = prefer_wait(request.headers.get("Prefer"), settings.max_prefer_wait_s)
    waiter = request.app[OUTCOMES]
    pending = waiter.register(event_id, expected_commands(event_id, parsed)) if wait_s else None
    published = await _publish(request, tenant, envelope)
    if published is not True:
        waiter.forget(event_id)
        return published
    log.info(
        "webhook_accepted",
        tenant_id=tenant.id,
        event_id=event_id,
        action=parsed.action,
        items=len(parsed.purchases) or 1,
        refused_items=len(parsed.rejected),
        bytes=len(body),
    )
    answer = answers.accepted(event_id, parsed)
    if pending is not None and await waiter.wait(event_id, pending, wait_s):
        return json_response(answers.with_outcomes(answer, event_id, parsed, pending.outcomes))
    return json_response(answer, status=202)


async def _publish(
    request: web.Request, tenant: Tenant, envelope: RawEnvelope
) -> web.Response | bool:
    """True once Kafka acked the record; otherwise the response to send (413 or 503)."""
    settings = request.app[SETTINGS]
    producer = request.app[PRODUCER]
    record = envelope.to_bytes()
    if len(record) > settings.max_record_bytes:  # JSON escaping can grow a body past the cap
        return error(
            413,
            "body_too_large",
            f"the body takes {len(record)} bytes once stored; the limit is "
            f"{settings.max_record_bytes}: send smaller batches",
        )
    try:
        async with asyncio.timeout(settings.publish_timeout_s):
            await producer.send_and_wait(topics.WEBHOOKS_RAW.name, record, key=tenant.id.encode())
        return True
    except MessageSizeTooLargeError:
        return error(413, "body_too_large", "the body is too large to store: send less at once")
    except (KafkaError, TimeoutError) as exc:
        log.error(
            "publish_failed",
            tenant_id=tenant.id,
            event_id=envelope.event_id,
            error=type(exc).__name__,
        )
        return _retry_later(
            request, "broker_unavailable", "could not store the webhook, retry later"
        )


def _audit(request: web.Request, record: AuditRecord) -> None:
    """Best effort and off the request path: a refusal is answered whether or not Kafka is up."""
    producer = request.app[PRODUCER]
    tasks = request.app[BACKGROUND]

    async def send() -> None:
        try:
            async with asyncio.timeout(10):
                await producer.send_and_wait(
                    topics.WEBHOOKS_AUDIT.name, record.to_bytes(), key=record.tenant_id.encode()
                )
        except (KafkaError, TimeoutError) as exc:
            log.warning("audit_publish_failed", event_id=record.event_id, error=type(exc).__name__)

    task = asyncio.create_task(send())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
