"""`kopilka replay raw`: feed accepted webhooks through the pipeline again.

The raw records of a period (and optionally one shop) are read from `webhooks.raw` and produced
to it again, key and value byte for byte. Every stage is idempotent on ids derived from the
record: already-awarded orders emit nothing new, and what failed before (a refund that came
before its purchase, a shop that was unknown, a bug since fixed) is processed now.

With `into_bootstrap` the records go to that cluster's `webhooks.raw` instead (a new deployment,
or one with another partition count: the records are keyed by shop, so the new partitioner
spreads them by its own count); the source is always `settings.kafka_bootstrap_servers`.

Only records that were on the topic when the replay started are read, so the replay never reads
its own output. The plan (where each partition starts and ends, the period in milliseconds) is
saved before the first record is read, and the next offset of every partition after every batch
the broker acknowledged: the same command, run again after an interruption, goes on from there
with the end offsets and period of the first run. The state file is named after the arguments
as typed (`--from 24h` names the same file every run), in `settings.replay_state_dir`. A dry run
neither reads nor writes it: it feeds nothing, so it has no progress to keep.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from kopilka.cli.progress import Reporter
from kopilka.core import topics
from kopilka.core.kafka import assign_whole_topic, make_producer
from kopilka.core.settings import Settings
from schemas.routing import tenant_of

BATCH = 2000  # records per fetch


@dataclass
class RawReplay:
    since: datetime | None = None
    until: datetime | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    tenant_id: str | None = None
    dry_run: bool = False
    into_bootstrap: str | None = None  # another cluster's bootstrap servers; None: the source
    max_rate: float | None = None  # records fed per second at most (None: as fast as it goes)
    # the period as typed (see the module docstring); None: named after the resolved values
    typed: tuple | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"scanned": 0, "matched": 0, "refed": 0})
    resumed_from: str | None = None  # when the interrupted run this one continues started

    def state_path(self, data_dir: Path) -> Path | None:
        """Where this replay keeps its progress; None for a dry run (it keeps none)."""
        if self.dry_run:
            return None
        period = [self.since, self.until, self.from_offset, self.to_offset]
        what = [*(period if self.typed is None else self.typed), self.tenant_id]
        if self.into_bootstrap is not None:
            what.append(self.into_bootstrap)
        digest = hashlib.sha1(repr(what).encode(), usedforsecurity=False).hexdigest()[:12]
        return data_dir / f"raw-{digest}.json"

    def wanted(self, key: bytes | None, timestamp_ms: int, since_ms: int | None = None) -> bool:
        if self.tenant_id is not None and tenant_of(key) != self.tenant_id:
            return False
        return since_ms is None or timestamp_ms >= since_ms


def _ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


async def run(job: RawReplay, settings: Settings, state_dir: Path) -> dict:
    state_path = job.state_path(state_dir)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_list,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.max_record_bytes + 64 * 1024,
        fetch_max_bytes=max(52_428_800, settings.max_record_bytes + 64 * 1024),
    )
    target = settings
    if job.into_bootstrap is not None:
        target = settings.model_copy(update={"kafka_bootstrap_servers": job.into_bootstrap})
    producer = None if job.dry_run else make_producer(target)
    await consumer.start()
    if producer is not None:
        await producer.start()
    try:
        tps = await assign_whole_topic(consumer, topics.WEBHOOKS_RAW.name)
        plan = _load(state_path)
        if plan is None:
            plan = await _plan(consumer, job, tps)
            _save(state_path, plan)  # the end offsets hold for every later run of this replay
        else:
            job.resumed_from = plan["started_at"]
        first = await consumer.beginning_offsets(tps)
        end = {tp: plan["end"].get(str(tp.partition), 0) for tp in tps}
        start = {
            tp: min(end[tp], max(first[tp], plan["position"].get(str(tp.partition), end[tp])))
            for tp in tps
        }
        await _feed(job, consumer, producer, plan, start, end, state_path)
        _remove(state_path)  # done: a new run starts afresh
        return dict(job.counts)
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()


async def _feed(job, consumer, producer, plan, start, end, state_path) -> None:
    since_ms, until_ms = plan["since_ms"], plan["until_ms"]
    left = {tp for tp in start if start[tp] < end[tp]}
    for tp in left:
        consumer.seek(tp, start[tp])
    reporter = Reporter("replay raw", sum(end[tp] - start[tp] for tp in start))
    pace = _Pace(job.max_rate)
    position = {tp.partition: start[tp] for tp in start}
    while left:
        batch = await consumer.getmany(*left, timeout_ms=1000, max_records=pace.batch)
        sent = []
        for tp, records in batch.items():
            read = 0
            for record in records:
                if record.offset >= end[tp] or (until_ms and record.timestamp > until_ms):
                    left.discard(tp)
                    consumer.pause(tp)
                    break
                read += 1
                position[tp.partition] = record.offset + 1
                if not job.wanted(record.key, record.timestamp, since_ms):
                    continue
                job.counts["matched"] += 1
                if producer is not None:
                    sent.append(
                        await producer.send(topics.WEBHOOKS_RAW.name, record.value, key=record.key)
                    )
            job.counts["scanned"] += read
            reporter.advance(read)
            if position[tp.partition] >= end[tp]:
                left.discard(tp)
        if sent:
            await asyncio.gather(*sent)  # on the broker before progress says so
            job.counts["refed"] += len(sent)
        if state_path is not None:
            plan["position"] = {str(p): o for p, o in position.items()}
            _save(state_path, plan)
        await pace.wait(len(sent))
    resumed = f", going on with the run started at {job.resumed_from}" if job.resumed_from else ""
    reporter.close(
        f"{job.counts['scanned']:,} records read, {job.counts['matched']:,} matched,"
        f" {job.counts['refed']:,} fed again"
        + (" (dry run)" if job.dry_run else "")
        + (f" into {job.into_bootstrap}" if job.into_bootstrap else "")
        + resumed
    )


class _Pace:
    """At most `rate` records fed per second: small fetches, and a pause when ahead."""

    def __init__(self, rate: float | None) -> None:
        self.rate, self.fed, self.started = rate, 0, time.monotonic()
        self.batch = BATCH if not rate else max(1, min(BATCH, int(rate)))

    async def wait(self, fed: int) -> None:
        if not self.rate:
            return
        self.fed += fed
        ahead = self.fed / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            await asyncio.sleep(ahead)


async def _plan(consumer: AIOKafkaConsumer, job: RawReplay, tps: list[TopicPartition]) -> dict:
    """Where each partition starts and ends, fixed when the replay first starts."""
    first = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    if job.to_offset is not None:
        end = {tp: min(end[tp], job.to_offset) for tp in tps}
    if job.from_offset is not None:
        start = {tp: max(first[tp], job.from_offset) for tp in tps}
    elif job.since is not None:
        found = await consumer.offsets_for_times({tp: _ms(job.since) for tp in tps})
        start = {tp: found[tp].offset if found[tp] else end[tp] for tp in tps}
    else:
        start = first
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "since_ms": _ms(job.since),
        "until_ms": _ms(job.until),
        "end": {str(tp.partition): end[tp] for tp in tps},
        "position": {str(tp.partition): min(start[tp], end[tp]) for tp in tps},
    }


def _load(path: Path | None) -> dict | None:
    if path is None or not path.exists():
        return None
    plan = json.loads(path.read_text())
    return plan if "end" in plan else None  # an older file without end offsets: start afresh


def _save(path: Path | None, plan: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(plan))
    tmp.replace(path)


def _remove(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
