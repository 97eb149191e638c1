"""Agent `normalize`: raw request bodies (webhooks.raw) -> canonical commands (loyalty.commands).

The body is parsed with the same parser the ingress used to validate it, identities are
normalised with the tenant's phone region, the customer is found or created in the identity
directory, and the order is claimed for that customer. The tenant's rules come from the
`tenants.rules` table (a compacted topic) and are copied into each command. Command ids derive
from the raw event id, so re-processing a raw record re-emits the same commands.

What cannot go ahead is reported, never dropped: a body that yields no command at all goes to
webhooks.dead with the reason; a batch item or action refused here (an order that belongs to
another customer, an unknown referrer, a refund of an unknown order) gets a `rejected` outcome
on loyalty.outcomes, which a waiting request (`Prefer: wait`) returns to the shop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from faust.types import EventT

from kopilka.customers import CustomerDirectory, ReferralRefused
from kopilka.ids import derived_id
from kopilka.logging import get_logger
from kopilka.rules_feed import RulesTable
from kopilka.tenants import TenantDirectory
from schemas.frozen_copy import constructed
from schemas.identity import normalize_phone
from schemas.inbound import InboundError, ParsedWebhook, Purchase, parse_webhook
from schemas.messages import (
    AuditRecord,
    Command,
    CustomerRef,
    Outcome,
    PurchaseCommand,
    RawEnvelope,
    RefundCommand,
    RegisterCommand,
    SpendCommand,
)
from schemas.routing import by_order, tenant_of
from schemas.tenant_rules import TenantRules
from streams.acks import held
from streams.app import (
    app,
    commands,
    outcomes,
    resources,
    settings,
    webhooks_audit,
    webhooks_dead,
    webhooks_deferred,
    webhooks_raw,
)
from streams.dead_letters import of_event
from streams.dead_letters import send as send_dead_letter
from streams.deferral import deferral, nap_until, once_more
from streams.grouping import run_grouped
from streams.raw_progress import RawProgress
from streams.retry import until_done

log = get_logger(__name__)


class Refused(Exception):
    """This request (or item) cannot go ahead: `code` and `reason` say why."""

    def __init__(
        self, code: str, reason: str, field: str | None = None, waiting_for: str | None = None
    ) -> None:
        super().__init__(reason)
        self.code, self.reason, self.field, self.waiting_for = code, reason, field, waiting_for


@dataclass
class Normalized:
    commands: list[Command] = field(default_factory=list)
    refused: list[Outcome] = field(default_factory=list)
    dead: AuditRecord | None = None
    error: BaseException | None = None  # what made it dead, when it was an error
    # what it waits for, which may come later: a refund's order id not claimed yet, or
    # "referrer" for a registration naming a customer not registered yet
    waiting_for: str | None = None


class Normalizer:
    def __init__(self) -> None:
        self.rules = RulesTable(settings)
        self._tenants: TenantDirectory | None = None
        self._customers: CustomerDirectory | None = None

    async def _setup(self) -> None:
        if self._tenants is None:
            pool = await resources.pool()
            self._tenants = TenantDirectory(pool, ttl_s=settings.tenant_cache_ttl_s)
            self._customers = CustomerDirectory(pool)

    async def tenant_rules(self, tenant_id: str) -> TenantRules | None:
        held = self.rules.get(tenant_id)
        if held is not None:
            return held[2]
        # Not (yet) on the topic, e.g. published while Kafka was down: Postgres has the truth.
        tenant = await until_done(lambda: self._tenants.by_id(tenant_id), "tenant")
        return tenant.rules if tenant is not None else None

    async def normalize(self, envs: list[RawEnvelope]) -> list[Normalized]:
        """What each raw record yields (commands, refusals, or its dead letter), in order.

        Runs of consecutive purchase requests (single, batch, Tilda) are resolved together:
        their items' customers concurrently, grouped by email and phone, so a busy shop's
        stream is not handled one request at a time; their orders are claimed in one
        statement per shop, first item first. Any other action is handled on its own, in
        its place, so what it depends on (a purchase before its refund) is already done."""
        await until_done(self._setup, "connect")
        prepared = [await self._prepare(env) for env in envs]
        results: list[Normalized | None] = [None] * len(envs)
        i = 0
        while i < len(envs):
            if isinstance(prepared[i], Normalized):
                results[i] = prepared[i]
                i += 1
                continue
            j = i
            while j < len(envs) and not isinstance(prepared[j], Normalized):
                if not prepared[j][1].purchases:
                    break
                j += 1
            if j > i:
                segment = [(envs[k], *prepared[k]) for k in range(i, j)]
                results[i:j] = await self._purchases(segment)
                i = j
                continue
            results[i] = await self._single(envs[i], *prepared[i])
            i += 1
        return results  # type: ignore[return-value]

    async def _prepare(self, env: RawEnvelope) -> tuple[TenantRules, ParsedWebhook] | Normalized:
        rules = await self.tenant_rules(env.tenant_id)
        if rules is None:
            return Normalized(dead=dead_letter(env, "unknown_tenant", None, "no such tenant"))
        try:
            parsed = parse_webhook(
                env.raw_body(), env.content_type, phone_region=rules.phone_region
            )
        except InboundError as exc:
            return Normalized(dead=dead_letter(env, exc.code, exc.field, exc.reason))
        return rules, parsed

    async def _single(
        self, env: RawEnvelope, rules: TenantRules, parsed: ParsedWebhook
    ) -> Normalized:
        try:
            return await self._commands(env, rules, parsed)
        except Refused as exc:
            out = Normalized(dead=dead_letter(env, exc.code, exc.field, exc.reason))
            out.refused.append(refusal(env, 0, exc.code, exc.reason))
            out.waiting_for = exc.waiting_for
            return out

    async def _purchases(
        self, segment: list[tuple[RawEnvelope, TenantRules, ParsedWebhook]]
    ) -> list[Normalized]:
        items = [(env, rules, p) for env, rules, parsed in segment for p in parsed.purchases]
        resolved = await run_grouped(
            items,
            lambda it: (
                (it[0].tenant_id, "email", it[2].email),
                (it[0].tenant_id, "phone", it[2].phone),
            ),
            lambda it: self._purchase(*it),
        )
        owners: dict[tuple[str, str], str] = {}
        by_tenant: dict[str, list[tuple[str, str]]] = {}
        for (env, _, p), r in zip(items, resolved, strict=True):
            if isinstance(r, CustomerRef):
                by_tenant.setdefault(env.tenant_id, []).append((p.order_id, r.id))
        for tenant_id, claims in by_tenant.items():
            claimed = await until_done(
                lambda t=tenant_id, c=claims: self._customers.claim_orders(t, c), "orders"
            )
            owners.update({(tenant_id, order): owner for order, owner in claimed.items()})
        out = {env.event_id: Normalized() for env, _, _ in segment}
        for (env, rules, p), result in zip(items, resolved, strict=True):
            if isinstance(result, CustomerRef) and owners[env.tenant_id, p.order_id] != result.id:
                result = _claimed_by_another(p.order_id)
            done = out[env.event_id]
            if isinstance(result, Refused):
                done.refused.append(refusal(env, p.index, result.code, result.reason))
                continue
            done.commands.append(purchase_command(env, rules, p, result))
        return [out[env.event_id] for env, _, _ in segment]

    async def _commands(
        self, env: RawEnvelope, rules: TenantRules, parsed: ParsedWebhook
    ) -> Normalized:
        """Commands of a request other than purchases (those go through `_purchases`)."""
        base = {
            "request_id": env.event_id,
            "tenant_id": env.tenant_id,
            "rules": rules,
            "wait": env.wait,
        }
        at = {"occurred_at": env.received_at}
        out = Normalized()
        if parsed.spend is not None:
            s = parsed.spend
            customer = await self._customer(env.tenant_id, rules, s.email, s.phone, None)
            await self._claim(env.tenant_id, s.order_id, customer)
            out.commands.append(
                SpendCommand(
                    command_id=derived_id(env.event_id, 0),
                    customer=customer,
                    order_id=s.order_id,
                    points=s.points,
                    order_amount=s.order_amount,
                    **base,
                    **at,
                )
            )
        elif parsed.refund is not None:
            r = parsed.refund
            owner = await self._order_owner(env.tenant_id, r.order_id)
            if owner is None:
                raise Refused(
                    "unknown_order",
                    f"no purchase or spend has orderId {r.order_id!r}",
                    waiting_for=r.order_id,
                )
            refund_id = r.refund_id or refund_key(r.amount)
            out.commands.append(
                RefundCommand(
                    command_id=derived_id(env.event_id, 0),
                    customer=owner,
                    order_id=r.order_id,
                    refund_id=refund_id,
                    amount=r.amount,
                    **base,
                    **at,
                )
            )
        elif parsed.registration is not None:
            out.commands.append(await self._register(env, rules, parsed, base | at))
        return out

    async def _order_owner(self, tenant_id: str, order_id: str) -> CustomerRef | None:
        return await until_done(lambda: self._customers.order_owner(tenant_id, order_id), "order")

    async def _customer(
        self, tenant_id: str, rules: TenantRules, email, phone, name
    ) -> CustomerRef:
        try:  # the ingress checked it, but the tenant's region may have changed since
            phone = normalize_phone(phone, rules.phone_region) if phone else None
        except ValueError as exc:
            raise Refused("invalid_field", str(exc), "phone") from None
        return await until_done(
            lambda: self._customers.resolve(tenant_id, email=email, phone=phone, name=name),
            "customer",
        )

    async def _claim(self, tenant_id: str, order_id: str, customer: CustomerRef) -> None:
        owner = await until_done(
            lambda: self._customers.claim_order(tenant_id, order_id, customer.id), "order"
        )
        if owner != customer.id:
            raise _claimed_by_another(order_id)

    async def _purchase(
        self, env: RawEnvelope, rules: TenantRules, p: Purchase
    ) -> CustomerRef | Refused:
        try:
            return await self._customer(env.tenant_id, rules, p.email, p.phone, p.name)
        except Refused as exc:
            return exc

    async def _referrer_ahead(
        self, env: RawEnvelope, kind: str, value: str, refused: ReferralRefused
    ) -> str:
        """The referrer of a registration the ingress accepted, which it does only once the
        referrer is known (ingest.precheck): its own requests are on their way, on another
        partition of webhooks.raw (a replay into a new deployment: another partition count).
        Waiting for them would let this customer's later requests, on its own partition,
        overtake its registration; its referrer is found or created by that identity instead,
        as the referrer's own request will (kopilka.customers derives the id from it). A
        referral code cannot be created ahead: that registration waits on webhooks.deferred
        (streams.deferral, streams.raw_progress)."""
        if kind not in ("email", "phone"):
            raise Refused(refused.code, refused.reason, "referrer", waiting_for="referrer")
        referrer = await until_done(
            lambda: self._customers.resolve(
                env.tenant_id,
                email=value if kind == "email" else None,
                phone=value if kind == "phone" else None,
            ),
            "customer",
        )
        log.info(
            "referrer_created_ahead",
            request_id=env.event_id,
            tenant_id=env.tenant_id,
            referrer_id=referrer.id,
        )
        return referrer.id

    async def _register(
        self, env: RawEnvelope, rules: TenantRules, parsed: ParsedWebhook, fields: dict
    ) -> RegisterCommand:
        reg = parsed.registration
        customer = await self._customer(env.tenant_id, rules, reg.email, reg.phone, reg.name)
        referrer_id = None
        if reg.referrer is not None:
            value = reg.referrer
            if reg.referrer_kind == "phone":
                value = normalize_phone(value, rules.phone_region)
            try:
                referrer_id = await until_done(
                    lambda: self._customers.check_referrer(
                        env.tenant_id, customer.id, reg.referrer_kind, value
                    ),
                    "referrer",
                )
            except ReferralRefused as exc:
                if exc.code != "unknown_referrer":
                    raise Refused(exc.code, exc.reason, "referrer") from None
                referrer_id = await self._referrer_ahead(env, reg.referrer_kind, value, exc)
        code, referrer_id = await until_done(
            lambda: self._customers.register(env.tenant_id, customer.id, referrer_id), "register"
        )
        return RegisterCommand(
            command_id=derived_id(env.event_id, 0),
            customer=customer,
            name=reg.name,
            referral_code=code,
            referrer_id=referrer_id,
            **fields,
        )


def purchase_command(
    env: RawEnvelope, rules: TenantRules, p: Purchase, customer: CustomerRef
) -> PurchaseCommand:
    """The command of one purchase, built from parts already checked (the envelope read from
    Kafka, the parsed body, the tenant's rules, the customer found): not validated again, which
    was a third of the cost of making one (the ledger validates what it reads)."""
    return constructed(
        PurchaseCommand,
        command_id=derived_id(env.event_id, p.index),
        request_id=env.event_id,
        wait=env.wait,
        tenant_id=env.tenant_id,
        rules=rules,
        item=p.index,
        customer=customer,
        order_id=p.order_id,
        amount=p.amount,
        description=p.description,
        occurred_at=env.received_at,
    )


def refund_key(amount: Decimal | None) -> str:
    """A refund without refundId is one per amount: `500` and `500.00` are the same refund."""
    if amount is None:
        return "full"
    return f"amount:{format(amount.normalize(), 'f')}"


def _claimed_by_another(order_id: str) -> Refused:
    return Refused(
        "order_of_another_customer",
        f"order {order_id!r} already belongs to another customer",
        "orderId",
    )


def dead_letter(env: RawEnvelope, code: str, field: str | None, reason: str) -> AuditRecord:
    return AuditRecord(
        event_id=env.event_id,
        tenant_id=env.tenant_id,
        received_at=env.received_at,
        status="dead",
        code=code,
        field=field,
        reason=reason,
        content_type=env.content_type,
        body_bytes=len(env.raw_body()),
    )


def accepted(env: RawEnvelope, commands: int, refused: int) -> AuditRecord:
    """The audit trail's line for a request normalised into commands (and item refusals)."""
    return AuditRecord(
        event_id=env.event_id,
        tenant_id=env.tenant_id,
        received_at=env.received_at,
        status="accepted",
        http_status=202,
        code="accepted",
        reason=f"{commands} command(s), {refused} refused",
        content_type=env.content_type,
        body_bytes=len(env.raw_body()),
    )


def refusal(env: RawEnvelope, item: int, code: str, reason: str) -> Outcome:
    return Outcome(
        request_id=env.event_id,
        command_id=derived_id(env.event_id, item),
        item=item,
        status="rejected",
        reason=f"{code}: {reason}",
    )


normalizer = Normalizer()
raw_progress = RawProgress(settings.bootstrap_list, settings.worker_id)


def _by_order(event: EventT, env: RawEnvelope, result: Normalized) -> bool:
    """A refund that travelled on its order's key (the ingress could not tell its owner)."""
    order_id = result.waiting_for or next(
        (c.order_id for c in result.commands if type(c) is RefundCommand), None
    )
    return order_id is not None and event.key == by_order(env.tenant_id, order_id)


def _stored_at(event: EventT, env: RawEnvelope) -> datetime:
    """When this deployment's webhooks.raw stored the record: the moment its backlog is
    measured from. Not `received_at`, which a replay into a new deployment keeps from the old
    one (the wait would then end at once). A record sent round keeps its first round's."""
    if env.stored_at is not None:
        return env.stored_at
    stamp = event.message.timestamp  # seconds; on webhooks.deferred (an older worker's): later
    return datetime.fromtimestamp(stamp, UTC) if stamp else env.received_at


async def _raw_backlog_done(stored_at: datetime) -> bool:
    """Has every raw record stored before `stored_at` been normalised? (No answer: not yet.)"""
    try:
        return await raw_progress.normalised_before(stored_at)
    except Exception as exc:  # the broker away: ask again on the next round
        log.warning("raw_progress_unknown", error=type(exc).__name__, detail=str(exc)[:200])
        return False


@app.on_before_shutdown.connect
async def _close_raw_progress(sender, **kwargs) -> None:
    await raw_progress.close()


@app.task
async def _load_rules() -> None:
    await normalizer.rules.start()


@app.on_before_shutdown.connect
async def _stop_rules(sender, **kwargs) -> None:
    await normalizer.rules.stop()


_batch_lock = asyncio.Lock()  # one batch at a time, whichever agent it comes from


@app.agent(webhooks_raw)
async def normalize(stream):
    async for events in stream.take_events(settings.normalize_batch, settings.normalize_within_s):
        async with _batch_lock:
            with held(events):
                await _normalize_batch(events)


@app.agent(webhooks_deferred)
async def normalize_deferred(stream):
    """Refunds that overtook their purchase, each no sooner than its `not_before`."""
    async for event in stream.events():
        env = _envelope(event.key, event.value)
        await nap_until(env.not_before if isinstance(env, RawEnvelope) else None)
        async with _batch_lock:
            with held([event]):
                await _normalize_batch([event])


async def _normalize_batch(events: list[EventT]) -> None:
    """Commands, refusals and dead letters of a batch of raw records, sent in their order."""
    envs: list[RawEnvelope] = []
    sources: list[EventT] = []
    for event in events:
        env = _envelope(event.key, event.value)
        if isinstance(env, AuditRecord):
            await _dead(event, env, tenant_id=tenant_of(event.key) or None)
        else:
            envs.append(env)
            sources.append(event)
    now = datetime.now(UTC)
    stored = [_stored_at(event, env) for event, env in zip(sources, envs, strict=True)]
    # A record past its wait is refused only if the backlog before it was done before it was
    # normalised: what it waits for, normalised in between, is done but not in its result.
    settled = [
        env.deferred_until is not None and now >= env.deferred_until and await _raw_backlog_done(at)
        for env, at in zip(envs, stored, strict=True)
    ]
    started = time.perf_counter()
    try:
        results = await normalizer.normalize(envs)
    except Exception:  # a bug or bad data: record by record, to isolate it
        log.exception("normalize_batch_failed", records=len(envs))
        results = [await _one_by_one(env) for env in envs]
    resolved = time.perf_counter()
    deferred = 0
    tracing = log.is_enabled_for(logging.DEBUG)
    for event, env, result, at, done_before in zip(
        sources, envs, results, stored, settled, strict=True
    ):
        # a refund that may have overtaken its customer's earlier requests (streams.raw_progress),
        # or one whose order is not claimed yet: round webhooks.deferred (streams.deferral)
        early = _by_order(event, env, result) and not await _raw_backlog_done(at)
        if early or result.waiting_for is not None:
            again = deferral(env, settings.refund_order_wait_s, now, at)
            if again is None and (early or not done_before):
                again = once_more(env, now)  # what it waits for may be in that backlog
            if again is not None:
                await webhooks_deferred.send(key=event.key, value=again.to_bytes())
                deferred += 1
                if tracing:
                    log.debug(
                        "request_deferred",
                        stage="normalize",
                        request_id=env.event_id,
                        tenant_id=env.tenant_id,
                        waiting_for=result.waiting_for,
                        until=again.deferred_until.isoformat(),
                    )
                continue
        await _emit(event, env, result)
        if tracing:
            _trace(env, result)
    commands_sent = sum(len(r.commands) for r in results)
    if commands_sent > 100:
        log.info(
            "normalized",
            requests=len(envs),
            commands=commands_sent,
            deferred=deferred,
            resolve_ms=round((resolved - started) * 1000),
            send_ms=round((time.perf_counter() - resolved) * 1000),
        )


def _trace(env: RawEnvelope, result: Normalized) -> None:
    log.debug(
        "request_normalized",
        stage="normalize",
        request_id=env.event_id,
        tenant_id=env.tenant_id,
        commands=[cmd.command_id for cmd in result.commands],
        refused=[outcome.reason for outcome in result.refused],
        dead=result.dead.code if result.dead is not None else None,
    )


def _envelope(key: bytes | None, value: bytes) -> RawEnvelope | AuditRecord:
    try:
        return RawEnvelope.from_bytes(value)
    except ValueError as exc:
        log.error("raw_unreadable", error=str(exc)[:200])
        return AuditRecord(
            event_id=derived_id("unreadable", value),
            tenant_id=tenant_of(key),
            received_at=datetime.now(UTC),
            status="dead",
            code="unreadable_envelope",
            reason=str(exc)[:500],
        )


async def _one_by_one(env: RawEnvelope) -> Normalized:
    try:
        [result] = await normalizer.normalize([env])
        return result
    except Exception as exc:  # permanent: transient errors are retried inside, never raised
        log.exception("normalize_failed", tenant_id=env.tenant_id, event_id=env.event_id)
        out = Normalized(dead=dead_letter(env, "internal_error", None, repr(exc)[:300]))
        out.error = exc
        return out


async def _dead(event: EventT, audit: AuditRecord, *, tenant_id: str | None, error=None) -> None:
    """The audit trail says the request is dead; the dead letter keeps it whole, to redrive."""
    await webhooks_dead.send(key=(tenant_id or "").encode(), value=audit.to_bytes())
    reason = audit.reason if audit.field is None else f"{audit.field}: {audit.reason}"
    await send_dead_letter(
        of_event(
            event,
            "normalize",
            audit.code,
            reason,
            error=error,
            tenant_id=tenant_id,
            request_id=audit.event_id,
        )
    )


async def _emit(event: EventT, env: RawEnvelope, result: Normalized) -> None:
    """Send what the request yields. Sends are buffered; Faust flushes the producer before it
    commits the raw record's offset, so nothing is acknowledged that was not sent."""
    for cmd in result.commands:
        await commands.send(key=cmd.key, value=cmd.to_bytes())
    if env.wait:
        for outcome in result.refused:
            await outcomes.send(key=env.event_id.encode(), value=outcome.to_bytes())
    if result.dead is not None:
        await _dead(event, result.dead, tenant_id=env.tenant_id, error=result.error)
        return
    await webhooks_audit.send(
        key=env.tenant_id.encode(),
        value=accepted(env, len(result.commands), len(result.refused)).to_bytes(),
    )
