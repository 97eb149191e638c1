"""`kopilka replay events`: what `loyalty.events` feeds, fed again from the topic.

Three jobs, one reader (`read_span` below):

* `--into postgres` rebuilds the Postgres read model from the whole topic into a fresh schema
  and swaps it in, in one transaction (kopilka/cli/events_rebuild.py);
* `--into postgres --from T` catches the *live* read model up from a point instead (this
  module, `catch_up`): every event from T on is upserted the way the worker's sink writes it
  (sinks/postgres.py ReadModelSink, idempotent on event_id: an event already recorded changes
  nothing, one that is missing is added and moves its lots). What it is for: the database was
  restored from a backup taken at T, or the sink lost a stretch; rebuilding from T alone into a
  fresh schema would throw away everything before T, so a partial rebuild never swaps;
* `--to-endpoint ID --from T --to T` puts a period's events back into a shop endpoint's outbox
  (kopilka/cli/events_redeliver.py).

The read model is `ledger_entries`, `lots` and `balances`: every row of them is derived from
events (sinks/ledger_rows.py), so the topic alone can rebuild them. Everything else is owned by
other parts and never touched here: tenants, tenant_rules, tenant_credentials and signing
secrets (the admin API); customers, customer_identities, identity_conflicts and order_claims
(the worker's identity directory and order ownership, resolved from raw webhooks before any
event exists, and not in the events); webhook_audit (webhooks.audit/dead); dead_letters; the
outbound tables (webhook_endpoints, webhook_deliveries, webhook_attempts, telegram_*).

Stop and resume: the catch-up saves the next offset of every partition after every batch it
wrote (events-<digest>.json in KOPILKA_REPLAY_STATE_DIR); the same command run again goes on from
there, and re-applying a batch is harmless (idempotent on event_id).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from kopilka.cli.progress import Reporter
from kopilka.core import topics
from kopilka.core.kafka import assign_whole_topic
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings

log = get_logger(__name__)
READ_MODEL = ("ledger_entries", "lots", "balances")


@dataclass
class Span:
    """Which records of loyalty.events: from a time or an offset, up to a time or an offset."""

    since: datetime | None = None
    until: datetime | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    # the span as the operator typed it ("24h" resolves to another time each run): when given,
    # the resume state is named after it, so the same command finds its state again
    typed: tuple | None = field(default=None, compare=False)

    def digest(self, *more: object) -> str:
        what = [self.since, self.until, self.from_offset, self.to_offset]
        what = [*(what if self.typed is None else self.typed), *more]
        return hashlib.sha1(repr(what).encode(), usedforsecurity=False).hexdigest()[:12]


def events_consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_list,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=52_428_800,
        # a fetch at the end of the log waits this long on the broker, and the offset requests
        # of the next step queue behind it on the same connection (500 ms by default, twice)
        fetch_max_wait_ms=50,
    )


async def span_offsets(
    consumer: AIOKafkaConsumer, span: Span, saved: dict[str, int] | None = None
) -> tuple[list[TopicPartition], dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Assign the whole topic; (partitions, start offsets, end offsets) of the span. `saved`
    (partition -> next offset, from an interrupted run) wins over the span's start."""
    # assigned already (an earlier span of the same job): assigning again costs ~0.5 s for the
    # fetcher to settle, each time
    tps = sorted(consumer.assignment()) or await assign_whole_topic(consumer, topics.EVENTS.name)
    first = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    if span.to_offset is not None:
        end = {tp: min(end[tp], span.to_offset) for tp in tps}
    if saved is not None:
        start = {tp: max(first[tp], saved.get(str(tp.partition), first[tp])) for tp in tps}
    elif span.from_offset is not None:
        start = {tp: max(first[tp], span.from_offset) for tp in tps}
    elif span.since is not None:
        found = await consumer.offsets_for_times(
            {tp: int(span.since.timestamp() * 1000) for tp in tps}
        )
        start = {tp: found[tp].offset if found[tp] else end[tp] for tp in tps}
    else:
        start = first
    return tps, start, end


async def read_span(
    consumer: AIOKafkaConsumer,
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
    until: datetime | None = None,
    max_records: int = 5000,
) -> AsyncIterator[tuple[list[ConsumerRecord], dict[int, int]]]:
    """Batches of records in [start, end) (each partition in offset order, stopping at the
    first record after `until`), each with the next offset of every partition after it."""
    until_ms = until.timestamp() * 1000 if until else None
    position = {tp.partition: start[tp] for tp in start}
    left = {tp for tp in start if start[tp] < end[tp]}
    for tp in left:
        consumer.seek(tp, start[tp])
    consumer.resume(*left)  # paused when an earlier span ended there
    while left:
        fetched = await consumer.getmany(*left, timeout_ms=1000, max_records=max_records)
        batch: list[ConsumerRecord] = []
        for tp, records in fetched.items():
            for record in records:
                if record.offset >= end[tp] or (until_ms and record.timestamp > until_ms):
                    left.discard(tp)
                    consumer.pause(tp)
                    break
                batch.append(record)
                position[tp.partition] = record.offset + 1
            if position[tp.partition] >= end[tp]:
                left.discard(tp)
                consumer.pause(tp)  # no more fetches for it (read_span resumes what it reads)
        if batch:
            yield batch, dict(position)


def load_state(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


class HeldConnection:
    """One connection, seen as a pool by code that acquires (the sink's flush)."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def acquire(self) -> HeldConnection:
        return self

    async def __aenter__(self):
        return self.conn

    async def __aexit__(self, *exc) -> None:
        return None


@dataclass
class CatchUp:
    span: Span
    batch: int = 2000
    counts: dict[str, int] = field(
        default_factory=lambda: {"read": 0, "written": 0, "unreadable": 0}
    )


async def apply_upserts(sink, records: list[ConsumerRecord], pool, counts: dict) -> None:
    """The sink's own upsert of these records (ReadModelSink.flush); unreadable ones are counted
    and skipped, as the sink dead-letters them."""
    for record in records:
        counts["read"] += 1
        try:
            sink.add(record.value)
        except Exception:
            counts["unreadable"] += 1
            log.warning("replay_event_unreadable", partition=record.partition, offset=record.offset)
    counts["written"] += await sink.flush(pool)


async def catch_up(job: CatchUp, settings: Settings, state_dir: Path) -> dict:
    """Upsert the span's events into the live read model, batch by batch (see the docstring)."""
    from kopilka.core import db
    from sinks.postgres import ReadModelSink

    state_path = state_dir / f"events-{job.span.digest('into-postgres')}.json"
    consumer = events_consumer(settings)
    pool = await db.create_pool(settings.database_url.get_secret_value(), max_size=2)
    await consumer.start()
    try:
        saved = load_state(state_path)
        _, start, end = await span_offsets(consumer, job.span, saved)
        reporter = Reporter("replay events", sum(max(0, end[tp] - start[tp]) for tp in start))
        sink = ReadModelSink()
        async for records, position in read_span(consumer, start, end, job.span.until, job.batch):
            await apply_upserts(sink, records, pool, job.counts)
            save_state(state_path, {str(p): o for p, o in position.items()})
            reporter.advance(len(records))
        reporter.close(
            f"{job.counts['read']:,} events read, {job.counts['written']:,} upserted into the"
            f" live read model, {job.counts['unreadable']:,} unreadable"
        )
        state_path.unlink(missing_ok=True)
        return dict(job.counts)
    finally:
        await consumer.stop()
        await pool.close()
