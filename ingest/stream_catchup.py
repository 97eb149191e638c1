"""A resuming stream's backlog: one tenant's records between its token and the shared tail.

A short-lived consumer of its own (no group) is assigned only the partitions where the token is
behind the hub, seeks each to the token's offset and reads it up to (not including) the hub's
offset at subscription time; from there on the hub's queue has every record. Records come out
in batches, in offset order within each partition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from kopilka import topics
from kopilka.logging import get_logger
from kopilka.settings import Settings

log = get_logger(__name__)


async def read_backlog(
    settings: Settings, ranges: dict[int, tuple[int, int]], tenant: bytes
) -> AsyncIterator[list[tuple[int, int, bytes]]]:
    """Yield batches of (partition, offset, value) of `tenant`'s records, for every partition p
    in `ranges` from its start offset (inclusive) to its end offset (exclusive). Between
    batches (every second at the latest) an empty batch may come: a chance to send a heartbeat."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_list,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",  # a token older than retention: the oldest record kept
        client_id=f"{settings.worker_id}-ingest-events-backlog",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = {p: TopicPartition(topics.EVENTS.name, p) for p in ranges}
        consumer.assign(list(tps.values()))
        for p, (start, _end) in ranges.items():
            consumer.seek(tps[p], start)
        remaining = {p: end for p, (_start, end) in ranges.items()}
        prefix = tenant + b":"
        while remaining:
            batch = await consumer.getmany(*(tps[p] for p in remaining), timeout_ms=1000)
            out = []
            for tp, records in batch.items():
                end = remaining.get(tp.partition)
                if end is None:
                    continue
                for record in records:
                    if record.offset >= end:
                        break
                    if record.key is not None and record.key.startswith(prefix):
                        out.append((tp.partition, record.offset, record.value))
            for p in list(remaining):
                if await consumer.position(tps[p]) >= remaining[p]:
                    del remaining[p]
                    consumer.pause(tps[p])
            yield out
    finally:
        await consumer.stop()
