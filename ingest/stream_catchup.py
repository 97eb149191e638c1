"""A resuming stream's backlog: one tenant's records between its token and the shared tail.

A consumer of its own while it reads (no group; taken from a small pool) is assigned only the
partitions where the token is behind the hub, seeks each to the token's offset and reads it up
to (not including) the hub's offset at subscription time; from there on the hub's queue has
every record. Records come out in batches, in offset order within each partition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from kopilka.core import topics
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings

log = get_logger(__name__)


class BacklogReaders:
    """Started consumers for backlogs, kept for the next one: starting a consumer (bootstrap,
    metadata, a connection to the leader) costs more than reading a short backlog, and after an
    ingress restart every open stream resumes at once. The hub's catch-up semaphore bounds how
    many are in use, so at most that many are kept."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._idle: list[AIOKafkaConsumer] = []

    async def take(self) -> AIOKafkaConsumer:
        if self._idle:
            return self._idle.pop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_list,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",  # a token older than retention: the oldest record kept
            client_id=f"{self._settings.worker_id}-ingest-events-backlog",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        return consumer

    def give_back(self, consumer: AIOKafkaConsumer) -> None:
        consumer.pause(*consumer.assignment())  # fetches nothing until the next assign
        self._idle.append(consumer)

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().stop()


async def read_backlog(
    readers: BacklogReaders, ranges: dict[int, tuple[int, int]], tenant: bytes
) -> AsyncIterator[list[tuple[int, int, bytes]]]:
    """Yield batches of (partition, offset, value) of `tenant`'s records, for every partition p
    in `ranges` from its start offset (inclusive) to its end offset (exclusive). Between
    batches (every second at the latest) an empty batch may come: a chance to send a heartbeat.
    A new assignment drops whatever the consumer fetched for an earlier one (aiokafka returns a
    fetched batch only while its assignment is the current one and the position matches)."""
    consumer = await readers.take()
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
    except BaseException as exc:
        if isinstance(exc, GeneratorExit):  # closed between two batches: the client left
            readers.give_back(consumer)
        else:  # failed or cancelled mid-request: not worth reusing
            await consumer.stop()
        raise
    else:
        readers.give_back(consumer)
