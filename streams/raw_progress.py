"""Has every raw webhook received before a given moment been normalised?

A refund whose order's owner the ingress could not tell travels on its order's key, on another
partition of `webhooks.raw` than its customer's earlier requests (schemas.routing). Normalised
as soon as it is read, it could overtake them: a spend sent before it, or the very purchase it
refunds, still in a worker's backlog. After a worker was down for a minute the kill -9 fault
scenario saw both: refunds refused as unknown orders after their wait, and a refund applied
before the spend the shop sent ahead of it. Everything a refund depends on was accepted before
it, so such a refund waits on `webhooks.deferred` (streams.deferral) until the workers' group
has committed, on every partition of `webhooks.raw`, past each record stored before the refund
arrived: then its order's claim and its customer's earlier commands are out, if they ever
will be.

The check reads the group's committed offsets and the partitions' offsets for that moment
from the broker (three requests); a "yes" is reused for a second, a "no" for half of one.
Offsets are committed every second, so with no backlog a refund waits a second or two.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kopilka.core import topics
from kopilka.core.kafka import assign_whole_topic

REUSE_S = 1.0  # a "yes" is reused this long (for any earlier moment)
REUSE_NO_S = 0.5  # a "no" this long (for any later moment): many refunds may wait at once


def caught_up(
    committed: Mapping[TopicPartition, int],
    first_after: Mapping[TopicPartition, int | None],
    ends: Mapping[TopicPartition, int],
) -> bool:
    """True when, on every partition, the group committed past every record stored before the
    moment: `first_after` is the first offset stored at or after it (None: every record so far
    was stored before it, so the whole partition, up to `ends`, must be committed)."""
    for tp, end in ends.items():
        needed = first_after.get(tp)
        if needed is None:
            needed = end
        if max(committed.get(tp, 0), 0) < needed:  # -1 or absent: nothing committed yet
            return False
    return True


class RawProgress:
    def __init__(self, bootstrap: list[str], group: str) -> None:
        self.bootstrap, self.group = bootstrap, group
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._tps: list[TopicPartition] = []
        self._lock = asyncio.Lock()
        self._known: tuple[float, float] = (0.0, float("-inf"))  # (when asked, moment caught up)
        self._behind: tuple[float, float] = (0.0, float("inf"))  # (when asked, moment not yet)

    async def normalised_before(self, moment: datetime) -> bool:
        """True when every raw record stored before `moment` has been normalised."""
        ms = moment.timestamp() * 1000
        async with self._lock:
            asked_at, upto = self._known
            if time.monotonic() - asked_at < REUSE_S and ms <= upto:
                return True
            asked_at, behind = self._behind
            if time.monotonic() - asked_at < REUSE_NO_S and ms >= behind:
                return False
            await self._start()
            assert self._consumer is not None and self._admin is not None
            committed = {
                tp: meta.offset
                for tp, meta in (
                    await self._admin.list_consumer_group_offsets(self.group, partitions=self._tps)
                ).items()
            }
            found = await self._consumer.offsets_for_times({tp: int(ms) for tp in self._tps})
            ends = await self._consumer.end_offsets(self._tps)
            first_after = {tp: (f.offset if f is not None else None) for tp, f in found.items()}
            done = caught_up(committed, first_after, ends)
            if done:
                self._known = (time.monotonic(), ms)
            else:
                self._behind = (time.monotonic(), ms)
            return done

    async def _start(self) -> None:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
            await consumer.start()
            self._tps = await assign_whole_topic(consumer, topics.WEBHOOKS_RAW.name)
            self._consumer = consumer
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            self._admin = admin

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
