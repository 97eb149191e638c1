"""`kopilka replay events --into postgres`: rebuild the read model from loyalty.events.

The read model (`ledger_entries`, `lots`, `balances`; why only these: kopilka/cli/events_replay.py)
is rebuilt in a fresh schema `kopilka_rebuild_<UTC time>` while the live tables keep serving,
then swapped in, in one transaction, so the read API sees the old model or the new one, never
half of either. Steps:

1. the three tables are created there like the live ones (`LIKE ... INCLUDING` defaults,
   checks, storage), without indexes;
2. every event of the topic, in batches: the rows `sinks.ledger_rows.rows_of` makes (the same
   function the worker's sink uses) go in by COPY: ledger entries straight into the table,
   awards, lot moves and balances into unlogged staging tables. An event id seen before (the
   topic is at-least-once) is skipped, as the sink skips it. Each batch and the next offset of
   every partition are committed together;
3. lots (the first award names a lot, later ones with the same lot id add to it, moves apply to
   lots that exist) and balances (highest seq per customer) are computed from the staging
   tables in SQL; the live tables' constraints and indexes are created with their own names;
4. catch-up with the sink's own upsert (events the worker wrote meanwhile), without locks;
5. the swap: the live tables are locked against writes (readers go on), the last events are
   upserted, the live tables move to `kopilka_replaced_<time>` and the new ones take their
   place. The worker's sink, blocked on the lock meanwhile, then writes into the new tables
   (idempotent on event_id, so an event both sides have is not applied twice).

The replaced tables are kept (`DROP SCHEMA kopilka_replaced_… CASCADE` once satisfied).
`recorded_at` and `balances.updated_at` are the rebuild's time, not the original's.

Stop and resume: Ctrl-C (or a crash) rolls back the batch in flight and leaves the live tables
untouched; the rebuild schema keeps its progress, and the same command run again continues it
(`--restart` drops it and starts afresh). A rebuild refuses to start when retention already
deleted the beginning of the topic (the model would lose that history) unless
`--allow-truncated-history`. Memory: a set of the event ids seen (about 100 bytes per event).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from kopilka.cli.events_replay import (
    READ_MODEL,
    HeldConnection,
    Span,
    apply_upserts,
    events_consumer,
    read_span,
    span_offsets,
)
from kopilka.cli.progress import Reporter
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings
from sinks.ledger_rows import AWARD_COLUMNS, BALANCE_COLUMNS, ENTRY_COLUMNS, read_event, rows_of

log = get_logger(__name__)
PREFIX, REPLACED = "kopilka_rebuild_", "kopilka_replaced_"
_LOCK = 0x6B6F70696C6B62  # one rebuild at a time
CATCH_UP_GAP = 5000  # bulk-copy again while more than this many events arrived meanwhile

_STAGING = """
CREATE UNLOGGED TABLE {s}._awards (ord bigint, lot_id uuid, tenant_id uuid, customer_id uuid,
    order_id text, points bigint, available_at timestamptz, expires_at timestamptz);
CREATE UNLOGGED TABLE {s}._moves (lot_id uuid, delta bigint);
CREATE UNLOGGED TABLE {s}._balances (ord bigint, tenant_id uuid, customer_id uuid,
    balance bigint, lifetime_spend numeric, level text, seq bigint);
CREATE TABLE {s}._progress (partition int PRIMARY KEY, next_offset bigint NOT NULL);
CREATE TABLE {s}._phase (phase text NOT NULL);
INSERT INTO {s}._phase VALUES ('copy');
"""
_FINISH = """
INSERT INTO {s}.lots (lot_id, tenant_id, customer_id, order_id, points, remaining,
                      available_at, expires_at)
SELECT f.lot_id, f.tenant_id, f.customer_id, f.order_id, t.points,
       t.points + COALESCE(m.delta, 0), f.available_at, f.expires_at
  FROM (SELECT DISTINCT ON (lot_id) * FROM {s}._awards ORDER BY lot_id, ord) f
  JOIN (SELECT lot_id, sum(points)::bigint AS points FROM {s}._awards GROUP BY lot_id) t
       USING (lot_id)
  LEFT JOIN (SELECT lot_id, sum(delta)::bigint AS delta FROM {s}._moves GROUP BY lot_id) m
       USING (lot_id);
INSERT INTO {s}.balances (tenant_id, customer_id, balance, lifetime_spend, level, seq)
SELECT DISTINCT ON (tenant_id, customer_id)
       tenant_id, customer_id, balance, lifetime_spend, level, seq
  FROM {s}._balances ORDER BY tenant_id, customer_id, seq DESC, ord;
DROP TABLE {s}._awards, {s}._moves, {s}._balances;
UPDATE {s}._phase SET phase = 'indexed';
"""


# ledger_entries.event (the whole event as jsonb) is never filtered on: its statistics were a
# third of the finish step and no plan uses them
_ANALYZED = {
    "ledger_entries": "(event_id, tenant_id, customer_id, type, order_id, occurred_at)",
    "lots": "",
    "balances": "",
}


class RebuildRefused(Exception):
    """The rebuild cannot start; the message says why and what to do."""


@dataclass
class Rebuild:
    restart: bool = False
    allow_truncated_history: bool = False
    batch: int = 20_000  # events per COPY and transaction
    on_batch: Callable[[int], None] | None = None  # after each bulk batch, with events read
    counts: dict[str, int] = field(
        default_factory=lambda: {"read": 0, "copied": 0, "duplicates": 0, "unreadable": 0}
    )


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(
        dsn,
        command_timeout=None,
        server_settings={
            # the sorts of the lots/balances step and the index builds stay in memory
            "work_mem": "256MB",
            "maintenance_work_mem": "512MB",
            # a batch and its progress commit together, so a crash that loses the last commits
            # loses both alike (the rerun reads them again); no WAL flush wait per batch
            "synchronous_commit": "off",
        },
    )
    return conn  # asyncpg's own binary jsonb codec takes the event's JSON text (no Python call)


async def run(job: Rebuild, settings: Settings) -> dict:
    conn = await connect(settings.database_url.get_secret_value())
    consumer = events_consumer(settings)
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK):
            raise RebuildRefused("another rebuild is running on this database")
        live = await conn.fetchval(
            "SELECT relnamespace::regnamespace::text FROM pg_class"
            " WHERE oid = 'ledger_entries'::regclass"
        )
        schema = await _resumable(conn, job.restart)
        await consumer.start()
        if schema is None:
            await _refuse_truncated(consumer, job)
            schema = PREFIX + datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
            await _create(conn, live, schema)
        else:
            log.info("rebuild_resumed", schema=schema)
        result = await _continue(job, settings, conn, consumer, live, schema)
        return {**job.counts, **result}
    finally:
        await consumer.stop()
        await conn.close()


async def _resumable(conn: asyncpg.Connection, restart: bool) -> str | None:
    found = await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1 ORDER BY nspname DESC",
        PREFIX + "%",
    )
    if restart:
        for row in found:
            await conn.execute(f'DROP SCHEMA "{row["nspname"]}" CASCADE')
        return None
    for row in found:
        if await conn.fetchval("SELECT to_regclass($1)", f"{row['nspname']}._phase"):
            return row["nspname"]
    return None


async def _refuse_truncated(consumer, job: Rebuild) -> None:
    tps, start, _ = await span_offsets(consumer, Span())
    lost = {tp.partition: start[tp] for tp in tps if start[tp] > 0}
    if lost and not job.allow_truncated_history:
        raise RebuildRefused(
            f"retention already deleted the first events of loyalty.events (partition: first"
            f" offset kept = {lost}); a rebuild would lose that history. Use --from T to catch"
            " the live model up instead, or --allow-truncated-history"
        )


async def _create(conn: asyncpg.Connection, live: str, s: str) -> None:
    async with conn.transaction():
        await conn.execute(f"CREATE SCHEMA {s}")
        for table in READ_MODEL:
            await conn.execute(
                f"CREATE TABLE {s}.{table} (LIKE {live}.{table} INCLUDING DEFAULTS"
                " INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE"
                " INCLUDING COMMENTS)"
            )
        await conn.execute(_STAGING.format(s=s))


async def _continue(job, settings, conn, consumer, live: str, s: str) -> dict:
    phase = await conn.fetchval(f"SELECT phase FROM {s}._phase")  # noqa: S608 - our own schema name
    saved = {str(r[0]): r[1] for r in await conn.fetch(f"SELECT * FROM {s}._progress")}  # noqa: S608 - our own schema name
    tps, start, end = await span_offsets(consumer, Span(), saved or None)
    reporter = Reporter("replay events", sum(max(0, end[tp] - start[tp]) for tp in tps))
    if phase == "copy":
        seen = {str(r[0]) for r in await conn.fetch(f"SELECT event_id FROM {s}.ledger_entries")}  # noqa: S608 - our own schema name
        t0 = time.monotonic()
        while True:
            await _bulk(job, conn, consumer, s, start, end, seen, reporter)
            start, end = end, await consumer.end_offsets(tps)
            if sum(end[tp] - start[tp] for tp in tps) <= CATCH_UP_GAP:
                break
        del seen
        t1 = time.monotonic()
        await _finish(conn, live, s)
        log.info(
            "rebuild_copied",
            events=job.counts["read"],
            copy_s=round(t1 - t0, 2),
            finish_s=round(time.monotonic() - t1, 2),
        )
    saved = {str(r[0]): r[1] for r in await conn.fetch(f"SELECT * FROM {s}._progress")}  # noqa: S608 - our own schema name
    _, start, end = await span_offsets(consumer, Span(), saved)
    t0 = time.monotonic()
    await _upsert(job, conn, consumer, live, s, start, end, reporter)  # what came meanwhile
    t1 = time.monotonic()
    replaced = await _swap(job, conn, consumer, live, s, reporter)
    log.info(
        "rebuild_caught_up", catch_up_s=round(t1 - t0, 2), swap_s=round(time.monotonic() - t1, 2)
    )
    reporter.close(
        f"{job.counts['read']:,} events read, {job.counts['copied']:,} copied,"
        f" {job.counts['duplicates']:,} duplicates, {job.counts['unreadable']:,} unreadable;"
        f" swapped in, the old tables are in {replaced}"
    )
    return {"replaced_schema": replaced}


async def _bulk(job, conn, consumer, s: str, start, end, seen: set, reporter) -> None:
    """COPY [start, end) into the rebuild schema. Batch n+1 is read and turned into rows while
    Postgres takes batch n (at most one write in flight, so progress stays in order)."""
    writing: asyncio.Task | None = None
    collecting = gc.isenabled()
    # the automatic collector kept rescanning the batch's records and rows (acyclic) while
    # they were built; instead, a young-generation collection every 10 batches bounds the
    # cyclic garbage the Kafka and Postgres clients leave (it scans what is alive: a batch)
    gc.disable()
    batches = 0
    try:
        async for records, position in read_span(consumer, start, end, None, job.batch):
            rows = _rows(job, records, seen)
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(_write(conn, s, rows, position))
            batches += 1
            if batches % 10 == 0:
                gc.collect(1)
            job.counts["copied"] += len(rows[0])
            reporter.advance(len(records))
            if job.on_batch is not None:
                job.on_batch(job.counts["read"])
        if writing is not None:
            await writing
    finally:
        if writing is not None and not writing.done():
            writing.cancel()  # its transaction rolls back; progress is the last committed one
            await asyncio.gather(writing, return_exceptions=True)
        if collecting:
            gc.enable()


def _rows(job, records, seen: set) -> tuple[list, list, list, list]:
    """The batch's rows: ledger entries, awards (with the record's offset: the first award
    names its lot), each lot's net move over the batch and each customer's newest balance."""
    entries, awards, moves, newest = [], [], {}, {}
    job.counts["read"] += len(records)
    for record in records:
        raw = record.value
        try:
            rows = rows_of(read_event(raw), raw)
        except Exception:
            job.counts["unreadable"] += 1
            log.warning(
                "rebuild_event_unreadable", partition=record.partition, offset=record.offset
            )
            continue
        if rows.event_id in seen:
            job.counts["duplicates"] += 1
            continue
        seen.add(rows.event_id)
        entries.append(rows.entry)
        if rows.award is not None:
            awards.append((record.offset, *rows.award))
        for lot_id, delta in rows.moves:
            moves[lot_id] = moves.get(lot_id, 0) + delta
        key = rows.balance[:2]
        held = newest.get(key)
        if held is None or held[-1] < rows.seq:
            newest[key] = (record.offset, *rows.balance)
    return entries, awards, list(moves.items()), list(newest.values())


async def _write(conn, s: str, rows: tuple, position: dict[int, int]) -> None:
    entries, awards, moves, balances = rows
    async with conn.transaction():
        if entries:
            await conn.copy_records_to_table(
                "ledger_entries", schema_name=s, records=entries, columns=ENTRY_COLUMNS
            )
        if awards:
            await conn.copy_records_to_table(
                "_awards", schema_name=s, records=awards, columns=("ord", *AWARD_COLUMNS)
            )
        if moves:
            await conn.copy_records_to_table("_moves", schema_name=s, records=moves)
        if balances:
            await conn.copy_records_to_table(
                "_balances", schema_name=s, records=balances, columns=("ord", *BALANCE_COLUMNS)
            )
        await _save_progress(conn, s, position)


async def _save_progress(conn, s: str, position: dict[int, int]) -> None:
    await conn.executemany(
        f"INSERT INTO {s}._progress VALUES ($1, $2)"  # noqa: S608 - our own schema name
        " ON CONFLICT (partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
        list(position.items()),
    )


async def _finish(conn: asyncpg.Connection, live: str, s: str) -> None:
    """Lots and balances from the staging tables, then the live tables' constraints and
    indexes (same names, same definitions), in one transaction."""
    async with conn.transaction():
        await conn.execute(_FINISH.format(s=s))
        for table in READ_MODEL:
            for name, definition in await conn.fetch(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x', 'f')",
                f"{live}.{table}",
            ):
                await conn.execute(f'ALTER TABLE {s}.{table} ADD CONSTRAINT "{name}" {definition}')
            for (definition,) in await conn.fetch(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid ="
                " $1::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
                " WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)",
                f"{live}.{table}",
            ):
                on = f" ON {live}.{table} "
                if on not in definition:
                    raise RuntimeError(f"cannot place index {definition!r} in {s}")
                await conn.execute(definition.replace(on, f" ON {s}.{table} ", 1))
    for table, columns in _ANALYZED.items():  # planner statistics, before the read API uses it
        await conn.execute(f"ANALYZE {s}.{table} {columns}")


async def _upsert(job, conn, consumer, live, s, start, end, reporter, locked=False) -> None:
    """Events after the bulk copy, the way the worker's sink writes them, into the new tables
    (the sink's unqualified table names find them first on the search path)."""
    if all(start[tp] >= end[tp] for tp in start):
        return  # nothing came meanwhile (and importing the sink starts a Faust app: ~0.5 s)
    from sinks.postgres import ReadModelSink

    sink, counts = ReadModelSink(), {"read": 0, "written": 0, "unreadable": 0}
    await conn.execute(f"SET {'LOCAL ' if locked else ''}search_path TO {s}, {live}")
    try:
        async for records, position in read_span(consumer, start, end, None, job.batch):
            async with conn.transaction():  # a savepoint inside the swap's transaction
                await apply_upserts(sink, records, HeldConnection(conn), counts)
                await _save_progress(conn, s, position)
            reporter.advance(len(records))
    finally:
        if not locked:
            await conn.execute("RESET search_path")
    job.counts["read"] += counts["read"]
    job.counts["unreadable"] += counts["unreadable"]
    job.counts["copied"] += counts["written"]


async def _swap(job, conn, consumer, live: str, s: str, reporter) -> str:
    replaced = REPLACED + s.removeprefix(PREFIX)
    tables = ", ".join(f"{live}.{t}" for t in READ_MODEL)
    async with conn.transaction():
        # writers (the worker's sink) wait from here; readers go on until the ALTERs below
        await conn.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
        saved = {str(r[0]): r[1] for r in await conn.fetch(f"SELECT * FROM {s}._progress")}  # noqa: S608 - our own schema name
        _, start, end = await span_offsets(consumer, Span(), saved)
        await _upsert(job, conn, consumer, live, s, start, end, reporter, locked=True)
        await conn.execute(f"CREATE SCHEMA {replaced}")
        for table in READ_MODEL:
            await conn.execute(f"ALTER TABLE {live}.{table} SET SCHEMA {replaced}")
            await conn.execute(f"ALTER TABLE {s}.{table} SET SCHEMA {live}")
        await conn.execute(f"DROP SCHEMA {s} CASCADE")  # progress and phase only, now
    log.info("rebuild_swapped", schema=s, replaced=replaced, events=job.counts["read"])
    return replaced
