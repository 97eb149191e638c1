"""Postgres sinks: the ledger (entries, lots, balances) and the webhook audit log.

Plain classes behind the sink protocol (`sinks.base.Sink`): `add()` records, `flush()` them in
one transaction; every write is idempotent on event_id, so a record written twice changes
nothing. They know nothing of the stream: the worker's agents that feed them, acknowledge what
was flushed and dead-letter what the database refuses are `streams.read_model`; the replay and
reconcile commands feed `ReadModelSink` themselves, passing their own pool or connection to
`flush(pool)`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from kopilka.core.logging import get_logger
from schemas.events import parse_event
from schemas.messages import audit_lines
from sinks.ledger_rows import (
    LedgerRows,
    merged_awards,
    merged_moves,
    newest_balances,
    rows_of,
)

log = get_logger(__name__)

Connect = Callable[[], Awaitable[asyncpg.Pool]]


class PostgresSink:
    """What the Postgres sinks share: the pool they write to, which `connect` gives them at
    `setup()`. The pool is its owner's: `close()` lets go of it without closing it."""

    def __init__(self, connect: Connect | None = None) -> None:
        self._connect = connect
        self.pool: asyncpg.Pool | None = None

    async def setup(self) -> None:
        if self.pool is None and self._connect is not None:
            self.pool = await self._connect()

    def clear(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        self.clear()
        self.pool = None

    def _target(self, pool: asyncpg.Pool | None) -> asyncpg.Pool:
        """The pool a flush writes to: the one passed in, else the one `setup()` found."""
        target = pool if pool is not None else self.pool
        if target is None:
            raise RuntimeError(f"{type(self).__name__}.flush before setup() and without a pool")
        return target


class ReadModelSink(PostgresSink):
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
    # Awards with the same times share a lot (schemas.rules.builder): the first creates it, the
    # others add to it. Only newly inserted events get here, so a replay never adds twice.
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

    def __init__(self, connect: Connect | None = None) -> None:
        super().__init__(connect)
        self.events: dict[str, LedgerRows] = {}
        self.tracing = log.is_enabled_for(logging.DEBUG)  # a line per event (kopilka.core.logging)
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

    async def flush(self, pool: asyncpg.Pool | None = None) -> int:
        if not self.events:
            return 0
        pool = self._target(pool)
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


class AuditSink(PostgresSink):
    """webhooks.audit (accepted, refused) and webhooks.dead -> webhook_audit; dead wins. A record
    may carry many requests' lines (schemas.messages.audit_lines)."""

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

    def __init__(self, connect: Connect | None = None) -> None:
        super().__init__(connect)
        self.rows: dict[str, tuple] = {}

    def clear(self) -> None:
        self.rows = {}

    def add(self, raw: bytes) -> None:
        for rec in audit_lines(raw):
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

    async def flush(self, pool: asyncpg.Pool | None = None) -> int:
        if not self.rows:
            return 0
        pool = self._target(pool)
        cols = list(zip(*self.rows.values(), strict=True))
        cols[0] = [uuid.UUID(v) for v in cols[0]]
        cols[1] = [uuid.UUID(v) if v else None for v in cols[1]]
        async with pool.acquire() as conn:
            await conn.execute(self._UPSERT, *cols)
        written = len(self.rows)
        self.rows = {}
        return written
