"""`kopilka replay raw`: feed accepted webhooks through the pipeline again.

The raw records of a period (and optionally one shop) are read from `webhooks.raw` and produced
to it again, key and value byte for byte. Every stage is idempotent on ids derived from the
record: already-awarded orders emit nothing new, and what failed before (a refund that came
before its purchase, a shop that was unknown, a bug since fixed) is processed now.

Only records that were on the topic when the replay started are read, so the replay never reads
its own output. Progress (the next offset of every partition) is saved after every batch the
broker acknowledged: the same command, run again after an interruption, goes on from there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from kopilka import topics
from kopilka.kafka import assign_whole_topic, make_producer
from kopilka.progress import Reporter
from kopilka.settings import Settings
from schemas.routing import tenant_of


@dataclass
class RawReplay:
    since: datetime | None = None
    until: datetime | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    tenant_id: str | None = None
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"scanned": 0, "matched": 0, "refed": 0})

    def state_path(self, data_dir: Path) -> Path:
        what = [self.since, self.until, self.from_offset, self.to_offset, self.tenant_id]
        digest = hashlib.sha1(repr(what).encode(), usedforsecurity=False).hexdigest()[:12]
        return data_dir / f"raw-{digest}.json"

    def wanted(self, key: bytes | None, timestamp_ms: int) -> bool:
        if self.tenant_id is not None and tenant_of(key) != self.tenant_id:
            return False
        return self.since is None or timestamp_ms >= self.since.timestamp() * 1000


async def run(job: RawReplay, settings: Settings, state_dir: Path) -> dict:
    state_path = job.state_path(state_dir)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_list,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.max_record_bytes + 64 * 1024,
        fetch_max_bytes=max(52_428_800, settings.max_record_bytes + 64 * 1024),
    )
    producer = None if job.dry_run else make_producer(settings)
    await consumer.start()
    if producer is not None:
        await producer.start()
    try:
        tps = await assign_whole_topic(consumer, topics.WEBHOOKS_RAW.name)
        end = await consumer.end_offsets(tps)
        start = await _start_offsets(consumer, job, tps, state_path)
        if job.to_offset is not None:
            end = {tp: min(end[tp], job.to_offset) for tp in tps}
        left = {tp for tp in tps if start[tp] < end[tp]}
        for tp in left:
            consumer.seek(tp, start[tp])
        reporter = Reporter("replay raw", sum(max(0, end[tp] - start[tp]) for tp in tps))
        until_ms = job.until.timestamp() * 1000 if job.until else None
        position = dict(start)
        while left:
            batch = await consumer.getmany(*left, timeout_ms=1000, max_records=2000)
            sent = []
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= end[tp] or (until_ms and record.timestamp > until_ms):
                        left.discard(tp)
                        consumer.pause(tp)
                        break
                    job.counts["scanned"] += 1
                    position[tp] = record.offset + 1
                    if not job.wanted(record.key, record.timestamp):
                        continue
                    job.counts["matched"] += 1
                    if producer is not None:
                        sent.append(
                            await producer.send(
                                topics.WEBHOOKS_RAW.name, record.value, key=record.key
                            )
                        )
                reporter.advance(len(records))
                if position[tp] >= end[tp]:
                    left.discard(tp)
            if sent:
                await asyncio.gather(*sent)  # on the broker before progress says so
                job.counts["refed"] += len(sent)
            _save(state_path, position)
        reporter.close(
            f"{job.counts['scanned']:,} records read, {job.counts['matched']:,} matched,"
            f" {job.counts['refed']:,} fed again" + (" (dry run)" if job.dry_run else "")
        )
        state_path.unlink(missing_ok=True)  # done: a new run starts afresh
        return dict(job.counts)
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()


async def _start_offsets(
    consumer: AIOKafkaConsumer, job: RawReplay, tps: list[TopicPartition], state_path: Path
) -> dict[TopicPartition, int]:
    first = await consumer.beginning_offsets(tps)
    saved = _load(state_path)
    if saved is not None:  # resume where the interrupted run stopped
        return {tp: max(first[tp], saved.get(str(tp.partition), first[tp])) for tp in tps}
    if job.from_offset is not None:
        return {tp: max(first[tp], job.from_offset) for tp in tps}
    if job.since is not None:
        found = await consumer.offsets_for_times(
            {tp: int(job.since.timestamp() * 1000) for tp in tps}
        )
        end = await consumer.end_offsets(tps)
        return {tp: found[tp].offset if found[tp] else end[tp] for tp in tps}
    return first


def _load(path: Path) -> dict[str, int] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _save(path: Path, position: dict[TopicPartition, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({str(tp.partition): off for tp, off in position.items()}))
    tmp.replace(path)
