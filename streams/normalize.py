"""Agent `normalize`: raw request bodies (webhooks.raw) -> canonical commands (loyalty.commands).

What each request yields is streams.normalizer's job; here records are read in batches, sent
round webhooks.deferred when what they wait for may still come (streams.deferral,
streams.raw_progress), and what they yield is sent, in their order.

What cannot go ahead is reported, never dropped: a body that yields no command at all goes to
webhooks.dead with the reason; a batch item or action refused here (an order that belongs to
another customer, an unknown referrer, a refund of an unknown order) gets a `rejected` outcome
on loyalty.outcomes, which a waiting request (`Prefer: wait`) returns to the shop.

`register(stream_app)` makes the normaliser and the raw-progress reader from the app's settings
and puts the agents, the rules loader and their shutdown hooks on the app (streams.app).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from faust.types import EventT

from kopilka.core.ids import derived_id
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings
from schemas.actions.refund import RefundCommand
from schemas.commands import Command, command_batch
from schemas.messages import AuditRecord, RawEnvelope, audit_batch
from schemas.routing import by_order, tenant_of
from streams.acks import held
from streams.app import StreamApp, Topics
from streams.dead_letters import of_event
from streams.dead_letters import send as send_dead_letter
from streams.deferral import deferral, nap_until, once_more, raw_stored_at
from streams.normalizer import Normalized, Normalizer
from streams.raw_progress import RawProgress
from streams.ready_batches import ready_batches
from streams.request_records import accepted, dead_letter

log = get_logger(__name__)

# Bound by `register`: nothing is made at import.
settings: Settings
topics: Topics
normalizer: Normalizer
raw_progress: RawProgress


def _partition_unknown(key: bytes) -> int | None:
    return None


# The partition of loyalty.commands a key goes to, as the producer's partitioner picks it (None
# while the producer does not know the topic yet): bound by `register`.
partition_of: Callable[[bytes], int | None] = _partition_unknown


def register(stream_app: StreamApp) -> None:
    """`normalize` on webhooks.raw, `normalize_deferred` on webhooks.deferred, the rules loader,
    and what closes them at shutdown."""
    global settings, topics, normalizer, raw_progress, partition_of
    settings, topics = stream_app.settings, stream_app.topics
    partition_of = _partitioner(stream_app)
    normalizer = Normalizer(settings, stream_app.resources.pool)
    raw_progress = RawProgress(settings.bootstrap_list, settings.worker_id)
    app = stream_app.app
    app.on_before_shutdown.connect(_close_raw_progress)
    app.task(_load_rules)
    app.on_before_shutdown.connect(_stop_rules)
    app.agent(topics.webhooks_raw)(normalize)
    app.agent(topics.webhooks_deferred)(normalize_deferred)


def _partitioner(stream_app: StreamApp) -> Callable[[bytes], int | None]:
    producer, name = stream_app.app.producer, stream_app.topics.commands.get_topic_name()

    def partition(key: bytes) -> int | None:
        try:
            return producer.key_partition(name, key).partition
        except Exception:  # no metadata for the topic yet: its commands go one a record
            return None

    return partition


def _by_order(event: EventT, env: RawEnvelope, result: Normalized) -> bool:
    """A refund that travelled on its order's key (the ingress could not tell its owner)."""
    order_id = result.waiting_for or next(
        (c.order_id for c in result.commands if type(c) is RefundCommand), None
    )
    return order_id is not None and event.key == by_order(env.tenant_id, order_id)


async def _raw_backlog_done(stored_at: datetime) -> bool:
    """Has every raw record stored before `stored_at` been normalised? (No answer: not yet.)"""
    try:
        return await raw_progress.normalised_before(stored_at)
    except Exception as exc:  # the broker away: ask again on the next round
        log.warning("raw_progress_unknown", error=type(exc).__name__, detail=str(exc)[:200])
        return False


async def _close_raw_progress(sender, **kwargs) -> None:
    await raw_progress.close()


async def _load_rules() -> None:
    await normalizer.rules.start()


async def _stop_rules(sender, **kwargs) -> None:
    await normalizer.rules.stop()


# ~300 bytes a line: a record of a few hundred lines stays far below a produce request's size
AUDIT_LINES_PER_RECORD = 500
# A command is ~1 KB (it carries its tenant's rules): a batch record of up to 200, and at most
# 1 MiB (a command larger than that goes alone, as any command did), stays far below the
# producer's request size (KOPILKA_MAX_RECORD_BYTES, 12 MiB).
COMMANDS_PER_RECORD = 200
COMMAND_RECORD_BYTES = 1 << 20

_batch_lock = asyncio.Lock()  # one batch at a time, whichever agent it comes from


async def normalize(stream):
    async with contextlib.aclosing(ready_batches(stream, settings.normalize_batch)) as batches:
        async for events in batches:
            async with _batch_lock:
                with held(events):
                    await _normalize_batch(events)


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
    stored = [
        raw_stored_at(env, event.message.timestamp)
        for event, env in zip(sources, envs, strict=True)
    ]
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
    # the next round's times from now, not from before normalising: that may have waited out a
    # database outage, and a first deadline already past would cut the wait short
    later = datetime.now(UTC)
    deferred = 0
    tracing = log.is_enabled_for(logging.DEBUG)
    lines: dict[str, list[AuditRecord]] = {}  # the audit lines of accepted requests, by tenant
    commands: list[Command] = []  # every command of the batch, in the requests' order
    for event, env, result, at, done_before in zip(
        sources, envs, results, stored, settled, strict=True
    ):
        # a refund that may have overtaken its customer's earlier requests (streams.raw_progress),
        # or one whose order is not claimed yet: round webhooks.deferred (streams.deferral)
        early = _by_order(event, env, result) and not await _raw_backlog_done(at)
        if early or result.waiting_for is not None:
            again = deferral(env, settings.refund_order_wait_s, later, at)
            if again is None and (early or not done_before):
                again = once_more(env, later)  # what it waits for may be in that backlog
            if again is not None:
                await topics.webhooks_deferred.send(key=event.key, value=again.to_bytes())
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
        line = await _emit(event, env, result)
        commands.extend(result.commands)
        if line is not None:
            lines.setdefault(env.tenant_id, []).append(line)
        if tracing:
            _trace(env, result)
    await _send_commands(commands)
    await _send_audit(lines)
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
    await topics.webhooks_dead.send(key=(tenant_id or "").encode(), value=audit.to_bytes())
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


async def _emit(event: EventT, env: RawEnvelope, result: Normalized) -> AuditRecord | None:
    """Send what the request yields but its commands (`_send_commands` sends a batch's); its
    audit line when it was accepted (`_send_audit` sends those). Sends are buffered; Faust
    flushes the producer before it commits the raw record's offset, so nothing is acknowledged
    that was not sent."""
    if env.wait:
        for outcome in result.refused:
            await topics.outcomes.send(key=env.event_id.encode(), value=outcome.to_bytes())
    if result.dead is not None:
        await _dead(event, result.dead, tenant_id=env.tenant_id, error=result.error)
        return None
    return accepted(env, len(result.commands), len(result.refused))


async def _send_commands(commands: list[Command]) -> None:
    """A batch's commands, a record per partition of loyalty.commands they go to (up to
    COMMANDS_PER_RECORD a record; schemas.commands.command_batch), each partition's in the
    requests' order: a customer's commands all go to one partition, so each customer's stay in
    order. A lone command goes as itself, and so does every command while the producer does
    not know the topic's partitions yet."""
    encoded = [(cmd.key, cmd.to_bytes()) for cmd in commands]  # each key and JSON made once
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in encoded:
        partition = partition_of(key)
        if partition is None:
            for one_key, one_value in encoded:
                await topics.commands.send(key=one_key, value=one_value)
            return
        by_partition.setdefault(partition, []).append((key, value))
    for partition, mine in by_partition.items():
        for chunk in _chunks(mine):
            value = chunk[0][1] if len(chunk) == 1 else command_batch([v for _, v in chunk])
            await topics.commands.send(key=chunk[0][0], value=value, partition=partition)


def _chunks(encoded: list[tuple[bytes, bytes]]) -> list[list[tuple[bytes, bytes]]]:
    """(key, command) pairs cut, in order, into records of at most COMMANDS_PER_RECORD commands
    and COMMAND_RECORD_BYTES bytes (or one command alone, however large)."""
    chunks: list[list[tuple[bytes, bytes]]] = []
    chunk: list[tuple[bytes, bytes]] = []
    size = 0
    for pair in encoded:
        if chunk and (
            len(chunk) >= COMMANDS_PER_RECORD or size + len(pair[1]) > COMMAND_RECORD_BYTES
        ):
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(pair)
        size += len(pair[1]) + 1  # and its comma
    if chunk:
        chunks.append(chunk)
    return chunks


async def _send_audit(lines: dict[str, list[AuditRecord]]) -> None:
    """A batch's accepted requests go to webhooks.audit a few hundred lines a record, per tenant
    (schemas.messages.audit_lines): a record and a stream step per request was a fifth of what
    the worker sent and read per purchase. Sent with the batch's commands, before its offsets
    are committed, so a request normalised again writes its line again (idempotent)."""
    for tenant_id, accepted_lines in lines.items():
        for at in range(0, len(accepted_lines), AUDIT_LINES_PER_RECORD):
            await topics.webhooks_audit.send(
                key=tenant_id.encode(),
                value=audit_batch(accepted_lines[at : at + AUDIT_LINES_PER_RECORD]),
            )
