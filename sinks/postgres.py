"""Postgres sinks: the ledger (entries + balances) and the webhook audit log.

Each sink follows the same small protocol: `add()` rows, `flush()` them in one transaction. The
agents below feed them in batches and retry a flush that failed for a transient reason until the
database is back: offsets are acknowledged only after the flush (or the dead letter), and every
write is idempotent on event_id, so a crash or a replay writes nothing twice.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial

import asyncpg
from faust.types import EventT

from kopilka.logging import get_logger
from kopilka.retry import until_done
from schemas.events import parse_event
from schemas.messages import AuditRecord
from sinks.ledger_rows import (
    LedgerRows,
    merged_awards,
    merged_moves,
    newest_balances,
    rows_of,
)
from streams.acks import held
from streams.app import (
    app,
    events,
    resources,
    settings,
    webhooks_audit,
    webhooks_dead,
)
from streams.dead_letters import of_event
from streams.dead_letters import send as send_dead_letter

log = get_logger(__name__)


class LedgerSink:
    """`loyalty.events` -> ledger_entries (one row per event), lots (what is left of each award)
    and balances (newest seq wins). Lot changes are applied only for events this flush newly
    inserted, in the same transaction, so a replayed event never moves a lot twice."""

    _INSERT_ENTRIES = """
    INSERT INTO ledger_entries (event_id, tenant_id, customer_id, type, order_id, amount, points,
                                balance_after, expires_at, occurred_at, event, delta, reason)
    SELECT e, t, c, y, o, a, p, b, x, w, v::jsonb, d, r
      FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                  $6::numeric[], $7::bigint[], $8::bigint[], $9::timestamptz[],
                  $10::timestamptz[], $11::text[], $12::bigint[], $13::text[])
           AS u(e, t, c, y, o, a, p, b, x, w, v, d, r)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
    """
    # Awards with the same times share a lot (streams.rules): the first creates it, the others
    # add to it. Only newly inserted events get here, so a replay never adds twice.
    _INSERT_LOTS = """
    INSERT INTO lots AS lot (lot_id, tenant_id, customer_id, order_id, points, remaining,
                             available_at, expires_at)
    SELECT l, t, c, o, p, p, a, x FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[],
                                             $5::bigint[], $6::timestamptz[], $7::timestamptz[])
           AS u(l, t, c, o, p, a, x)
    ON CONFLICT (lot_id) DO UPDATE
       SET points = lot.points + EXCLUDED.points, remaining = lot.remaining + EXCLUDED.remaining
    """
    _MOVE_LOTS = """
    UPDATE lots SET remaining = lots.remaining + d.delta
    FROM unnest($1::uuid[], $2::bigint[]) AS d(lot_id, delta) WHERE lots.lot_id = d.lot_id
    """
    _UPSERT_BALANCES = """
    INSERT INTO balances AS b (tenant_id, customer_id, balance, lifetime_spend, level, seq)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::numeric[], $5::text[],
                         $6::bigint[])
    ON CONFLICT (tenant_id, customer_id) DO UPDATE
       SET balance = EXCLUDED.balance, lifetime_spend = EXCLUDED.lifetime_spend,
           level = EXCLUDED.level, seq = EXCLUDED.seq, updated_at = now()
     WHERE b.seq < EXCLUDED.seq
    """

    def __init__(self) -> None:
        self.events: dict[str, LedgerRows] = {}
        self.tracing = log.is_enabled_for(logging.DEBUG)  # a line per event (kopilka.logging)
        self.traced: list[tuple[str, str | None, str]] = []

    def add(self, raw: bytes) -> None:
        event = parse_event(raw)
        if event.event_id not in self.events:
            self.events[event.event_id] = rows_of(event, raw)
            if self.tracing:
                self.traced.append((event.event_id, event.request_id, event.type))

    def clear(self) -> None:
        self.events = {}
        self.traced = []

    async def flush(self, pool: asyncpg.Pool) -> int:
        if not self.events:
            return 0
        batch = list(self.events.values())
        entries = _columns(r.entry for r in batch)
        async with pool.acquire() as conn, conn.transaction():
            inserted = {
                str(r["event_id"]) for r in await conn.fetch(self._INSERT_ENTRIES, *entries)
            }
            fresh = [r for r in batch if r.event_id in inserted]
            lots = _columns(merged_awards(fresh))
            if lots:
                await conn.execute(self._INSERT_LOTS, *lots)
            moves = merged_moves(fresh)
            if moves:
                await conn.execute(self._MOVE_LOTS, list(moves), list(moves.values()))
            await conn.execute(self._UPSERT_BALANCES, *_columns(newest_balances(batch)))
        if len(inserted) < len(batch):
            log.info("ledger_events_already_recorded", count=len(batch) - len(inserted))
        for event_id, request_id, kind in self.traced:
            log.debug(
                "event_recorded",
                stage="sink",
                request_id=request_id,
                event_id=event_id,
                type=kind,
                new=event_id in inserted,
            )
        written = len(self.events)
        self.clear()
        return written


def _columns(rows) -> list[list]:
    """Row tuples -> one list per column (what `unnest` takes); [] when there are no rows."""
    return [list(col) for col in zip(*rows, strict=True)]


class AuditSink:
    """webhooks.audit (accepted, refused) and webhooks.dead -> webhook_audit; dead wins."""

    _UPSERT = """
    INSERT INTO webhook_audit AS a (event_id, tenant_id, received_at, status, http_status, code,
                                    field, reason, content_type, body_bytes)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::int[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::int[])
    ON CONFLICT (event_id) DO UPDATE
       SET status = EXCLUDED.status, code = EXCLUDED.code, field = EXCLUDED.field,
           reason = EXCLUDED.reason
     WHERE EXCLUDED.status = 'dead'
    """

    def __init__(self) -> None:
        self.rows: dict[str, tuple] = {}

    def clear(self) -> None:
        self.rows = {}

    def add(self, raw: bytes) -> None:
        rec = AuditRecord.from_bytes(raw)
        row = (
            rec.event_id,
            rec.tenant_id,
            rec.received_at,
            rec.status,
            rec.http_status,
            rec.code,
            rec.field,
            rec.reason,
            rec.content_type,
            rec.body_bytes,
        )
        previous = self.rows.get(row[0])
        if previous is None or row[3] == "dead":  # one row per event per statement
            self.rows[row[0]] = row

    async def flush(self, pool: asyncpg.Pool) -> int:
        if not self.rows:
            return 0
        cols = list(zip(*self.rows.values(), strict=True))
        cols[0] = [uuid.UUID(v) for v in cols[0]]
        cols[1] = [uuid.UUID(v) if v else None for v in cols[1]]
        async with pool.acquire() as conn:
            await conn.execute(self._UPSERT, *cols)
        written = len(self.rows)
        self.rows = {}
        return written


async def _drain(stream, sink) -> None:
    """Batches into the sink. A flush failing for a transient reason is retried until it
    succeeds (the batch is not acknowledged before); one failing for a permanent reason is
    split, record by record, and the records the database still refuses are dead-lettered
    whole, so nothing is acknowledged that was neither written nor dead-lettered."""
    name = type(sink).__name__
    async for batch in stream.take_events(
        settings.sink_batch_size, within=settings.sink_batch_within_s
    ):
        with held(batch):
            await _write(sink, name, batch)


async def _write(sink, name: str, batch: list[EventT]) -> None:
    readable = []
    for event in batch:
        try:
            sink.add(event.value)
            readable.append(event)
        except Exception as exc:  # not ours to crash on, not ours to drop: dead-letter it
            await _dead(event, name, "unreadable_record", exc)
    pool = await until_done(resources.pool, "connect")
    try:
        await until_done(partial(sink.flush, pool), f"{name}.flush")
    except Exception:
        log.exception("sink_batch_failed", sink=name, records=len(readable))
        sink.clear()
        for event in readable:
            try:
                sink.add(event.value)
                await until_done(partial(sink.flush, pool), f"{name}.flush")
            except Exception as exc:
                sink.clear()
                await _dead(event, name, "refused_by_database", exc)


async def _dead(event: EventT, sink: str, code: str, exc: Exception) -> None:
    reason = f"{sink} could not write this record"
    await send_dead_letter(of_event(event, "sink.postgres", code, reason, error=exc))


audit_topics = app.topic(
    webhooks_audit.get_topic_name(),
    webhooks_dead.get_topic_name(),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)


@app.agent(events)
async def ledger_sink(stream):
    await _drain(stream, LedgerSink())


@app.agent(audit_topics)
async def audit_sink(stream):
    await _drain(stream, AuditSink())
