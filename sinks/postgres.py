"""Postgres sinks: the ledger (entries + balances) and the webhook audit log.

Each sink follows the same small protocol: `add()` rows, `flush()` them in one transaction. The
agents below feed them in batches (`stream.take`) and retry a failed flush until the database is
back: offsets are acknowledged only after the flush, and every write is idempotent on event_id,
so a crash or a replay writes nothing twice.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from functools import partial

import asyncpg
import orjson

from kopilka.logging import get_logger
from schemas.events import Event, parse_event
from schemas.messages import AuditRecord
from streams.app import (
    app,
    events,
    resources,
    settings,
    webhooks_audit,
    webhooks_dead,
)
from streams.retry import until_done

log = get_logger(__name__)


class LedgerSink:
    """`loyalty.events` -> ledger_entries (one row per event) and balances (newest seq wins)."""

    _INSERT_ENTRIES = """
    INSERT INTO ledger_entries (event_id, tenant_id, customer_id, type, order_id, amount, points,
                                balance_after, expires_at, occurred_at, event)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                         $6::numeric[], $7::bigint[], $8::bigint[], $9::timestamptz[],
                         $10::timestamptz[], $11::jsonb[])
    ON CONFLICT (event_id) DO NOTHING
    """
    _UPSERT_BALANCES = """
    INSERT INTO balances AS b (tenant_id, customer_id, balance, lifetime_spend, seq)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::numeric[], $5::bigint[])
    ON CONFLICT (tenant_id, customer_id) DO UPDATE
       SET balance = EXCLUDED.balance, lifetime_spend = EXCLUDED.lifetime_spend,
           seq = EXCLUDED.seq, updated_at = now()
     WHERE b.seq < EXCLUDED.seq
    """

    def __init__(self) -> None:
        self.events: list[tuple[Event, bytes]] = []

    def add(self, raw: bytes) -> None:
        self.events.append((parse_event(raw), raw))

    async def flush(self, pool: asyncpg.Pool) -> int:
        if not self.events:
            return 0
        entries = list(
            zip(
                *[
                    (
                        uuid.UUID(e.event_id),
                        uuid.UUID(e.tenant_id),
                        uuid.UUID(e.customer.id),
                        e.type,
                        getattr(e, "order_id", None),
                        Decimal(getattr(e, "amount", "0")),
                        getattr(e, "points", 0),
                        getattr(e, "balance_after", 0),
                        getattr(e, "expires_at", None),
                        e.occurred_at,
                        orjson.loads(raw),
                    )
                    for e, raw in self.events
                ],
                strict=True,
            )
        )
        newest: dict[tuple[str, str], Event] = {}
        for e, _ in self.events:
            key = (e.tenant_id, e.customer.id)
            if key not in newest or newest[key].seq < e.seq:
                newest[key] = e
        balances = list(
            zip(
                *[
                    (
                        uuid.UUID(e.tenant_id),
                        uuid.UUID(e.customer.id),
                        e.balance_after,
                        Decimal(e.lifetime_spend),
                        e.seq,
                    )
                    for e in newest.values()
                ],
                strict=True,
            )
        )
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(self._INSERT_ENTRIES, *entries)
            await conn.execute(self._UPSERT_BALANCES, *balances)
        written = len(self.events)
        self.events = []
        return written


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
    async for batch in stream.take(settings.sink_batch_size, within=settings.sink_batch_within_s):
        for raw in batch:
            try:
                sink.add(raw)
            except ValueError as exc:  # not ours to crash on: log and skip the record
                log.error("sink_unreadable_record", sink=type(sink).__name__, error=str(exc)[:300])
        pool = await until_done(resources.pool, "connect")
        await until_done(partial(sink.flush, pool), f"{type(sink).__name__}.flush")


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
