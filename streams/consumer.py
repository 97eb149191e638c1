"""The worker's Kafka consumer: a record fetched is either handed to its stream or fetched again.

faust-streaming 0.15's fetch loop (`Consumer._drain_messages`) loses records around every flow
stop, i.e. around every rebalance and table recovery:
- a record whose hand-over to the stream loses the race against `suspend_flow` is dropped, yet
  its offset is recorded as read, so the copy fetched after the next seek is dropped as old;
- `getmany` stops iterating a fetched batch when the flow stops or the generation changes, and
  nothing seeks back to the records it did not yield;
- the next record then looks like a gap (`offset > read + 1`), and a gap counts as acknowledged:
  the offsets of records no agent ever saw get committed;
- a record handed over while a seek (to the committed offsets, after a rebalance) ran, and the
  rest of a batch fetched before that seek, still move the read offset forward, so the records
  the seek wanted again are then dropped as old: a hole no agent acknowledges, and the
  partition never commits again (the watchdog's `partition_commits_gap`).
- a stream that takes a record from its queue while the flow is suspended (a rebalance) or of
  an older consumer generation skips it, and Faust *acknowledges* what it skips: when that record
  was the next one to commit (a worker keeping up has nothing else in flight), the commit that
  ends the rebalance moves past it, and no agent ever sees it.
The fault suite's kill -9 scenarios ended with partitions that never committed again and with
actions missing from the ledger (raw records committed with no command sent for them).

`StreamConsumer` discards what was fetched before the latest seek, and keeps, per partition,
the offset the stream needs next: the one after the last
record handed over, or where a seek put the partition. Whenever a batch ends with records not
handed over, or the flow stopped, every partition is put back to that offset before the next
fetch (under the same lock as Faust's own seeks, so neither undoes the other). Records may come
twice that way, never not at all; every stage here is idempotent on ids derived from its input.
After an assignment, nothing of a stream partition is handed over before `perform_seek` has put
it at its committed offset (or the start of its log): Faust resumes the fetcher first, and on
a slow start records fetched from wherever aiokafka's position was were processed for seconds
before that seek, out of order (a spend before the purchase it needed, after a kill -9).
An acknowledgement that comes while the flow is suspended, or for a record of an older
generation, releases the record but does not count towards the committed offset (`ack`).
"""

from __future__ import annotations

import asyncio
import contextlib
import types

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from kopilka.core.logging import get_logger
from streams.consumer_thread import ConsumerThread

log = get_logger(__name__)

JUMPS_BEFORE_HOLE = 5  # a real hole (retention) stays; a fetch that crossed a seek does not


class StreamConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with a fetch loop that never skips a record."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._next_offset: dict[TP, int] = {}
        self._reposition = False
        self._seeks = 0  # how many seeks so far: a batch fetched before a seek is stale
        # where a partition without a committed offset starts: the first record its log holds
        self._first_offset: dict[TP, int] = {}
        # (offset needed, offset fetched instead, how many times in a row)
        self._jumped: dict[TP, tuple[int, int, int]] = {}
        self._position_lock: asyncio.Lock | None = None
        # the generation in which a seek of ours last put each partition where its stream
        # needs to go on from: until then (after an assignment) nothing of it is handed over
        self._positioned: dict[TP, int] = {}
        # done once the flow is suspended or the consumer stops or crashes (`_hand_over`)
        self._interrupt: asyncio.Future | None = None

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _lock(self) -> asyncio.Lock:
        if self._position_lock is None:
            self._position_lock = asyncio.Lock()
        return self._position_lock

    def stop_flow(self) -> None:
        super().stop_flow()
        self._reposition = True  # whatever was fetched and not handed over comes again

    async def seek(self, partition: TP, offset: int) -> None:
        async with self._lock():
            self._seeks += 1
            await super().seek(partition, offset)
            self._position(partition, offset)

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets, and, for a partition nothing was ever
        committed for, a seek to the first record its log holds. Faust left such a partition
        wherever the fetcher was: after records fetched while the flow was stopped (and never
        handed over) that was past them, and the next worker started there."""
        async with self._lock():
            self._seeks += 1
            await super().perform_seek()
            changelogs = self.app.tables.changelog_topics
            fresh = []
            for tp in self.assignment():
                if tp.topic in changelogs:
                    continue
                offset = self._read_offset.get(tp)
                if offset is None:
                    fresh.append(tp)
                else:
                    self._position(tp, offset)
            if fresh:
                await self._from_the_start(fresh)

    async def _from_the_start(self, tps: list[TP]) -> None:
        earliest = await self.earliest_offsets(*tps)
        for tp in tps:
            start = earliest.get(tp) or 0
            await self._seek(tp, start)
            self._read_offset[tp] = start or None
            self._first_offset[tp] = start
            self._position(tp, start)

    async def refresh_metadata(self) -> None:
        """Fetch the cluster's metadata now, not at its next periodic refresh (minutes away):
        the group's view of how many partitions each topic has follows it."""
        client = self._thread._ensure_consumer()._client

        async def refresh() -> None:
            await client.force_metadata_update()

        await self._thread.call_thread(refresh)

    def _position(self, tp: TP, offset: int) -> None:
        """The stream needs `offset` next: set by a seek of ours, in this generation."""
        self._next_offset[tp] = offset
        self._positioned[tp] = self.app.consumer_generation_id

    def ack(self, message: Message) -> bool:
        """Count a record as done only if no rebalance came between its delivery and now.

        Faust's streams acknowledge the records they skip (taken from the queue while the flow
        is suspended, or fetched in an older generation) as if processed. Such an ack, and the
        ack of a record finished while a rebalance runs, is not counted: the record stays
        uncommitted and comes again after the re-seek (or to the partition's next owner). It
        still leaves the set of records in flight, so a rebalance waiting for the streams to
        empty is not held up."""
        app = self.app
        if message.generation_id == app.consumer_generation_id and app.flow_control.is_active():
            return super().ack(message)
        with ack_lock:
            if not message.acked:
                message.acked = True
                self._unacked_messages.discard(message)
                notify(self._waiting_for_ack)
        return False

    def _hole(self, tp: TP, first: int, end: int) -> None:
        """Offsets [first, end) hold no record (deleted by retention before they were read):
        they count as acknowledged. Faust took any jump for such a hole; but a fetch crossing
        a seek jumps too, and its skipped records were then committed unread. So a jump is
        first fetched again from the offset needed; only the same jump JUMPS_BEFORE_HOLE
        times in a row is a hole."""
        gaps = self._gap[tp]
        gaps.addi(first, end)
        gaps.merge_overlaps()

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's, without its tolerance of one missing offset: it let the offset *at* the
        committed position be skipped (`min(acked) - committed > 1`, but `committed` is the
        next offset to read), so a record still held (a refund waiting for its purchase)
        was committed past, and lost with a kill -9. A partition nothing was committed for
        commits only from the first record its log holds (`perform_seek`), never from
        whichever record happened to be handed over first."""
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        if committed is None:
            committed = self._first_offset.get(tp)
            if committed is None:
                return None
        if acked and min(acked) > committed:
            if not self._gap[tp].overlaps(committed):
                return None
        return super()._new_offset(tp)

    def _not_handed(self, tp: TP, offset: int) -> None:
        """A fetched record the stream did not get: the partition goes back to it (or to
        an earlier record the stream needs) before the next fetch."""
        self._reposition = True
        self._next_offset.setdefault(tp, offset)

    async def _put_back(self) -> None:
        """Every partition back to the offset its stream needs next."""
        async with self._lock():
            self._seeks += 1
            self._reposition = False
            moved = 0
            for tp in self.assignment():
                offset = self._next_offset.get(tp)
                if offset is None:
                    continue
                with contextlib.suppress(Exception):  # revoked meanwhile: its owner seeks it
                    await self._seek(tp, offset)
                    moved += 1
            log.info("fetch_positions_restored", partitions=moved)

    async def _hand_over(self, deliver, message: Message) -> bool:
        """`deliver(message)` to the streams, unless the flow is suspended or the consumer
        stops or crashes first (Faust's `wait_first(deliver, suspend_flow)` per record, which
        made three more tasks per record and cancelled them). The delivery runs at once, here:
        it usually ends without waiting (the stream's queue has room), and then costs no task.
        Only one that has to wait (a full queue, a full producer buffer, flow control) goes on
        in a task, raced against one waiter shared by every record until it fires
        (`_interrupt`)."""
        delivery = deliver(message)
        try:
            waiting_for = delivery.send(None)
        except StopIteration:
            return not (self._stopped.is_set() or self._crashed.is_set())
        if self._interrupt is None or self._interrupt.done():
            self._interrupt = asyncio.ensure_future(self.wait_first(self.suspend_flow.wait()))
        handing = asyncio.ensure_future(_resumed(delivery, waiting_for))
        try:
            await asyncio.wait((handing, self._interrupt), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not handing.done():
                handing.cancel()
        if not handing.done() or handing.cancelled():
            return False  # its cancellation is under way
        if self._stopped.is_set() or self._crashed.is_set():
            return False
        handing.result()  # a delivery that failed raises here, as it did from wait_first
        return True

    async def _drain_messages(self, fetcher) -> None:
        deliver = self.callback
        read = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        stopping = self._stopped.is_set
        fetcher_stopping = fetcher._stopped.is_set
        try:
            while not (stopping() or fetcher_stopping()):
                if self._reposition and self.flow_active:
                    await self._put_back()
                generation, seeks = self.app.consumer_generation_id, self._seeks
                self.diag.set_flag("FETCHING")
                batch = self.getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    break
                handed = 0
                async for tp, message in batch:
                    if self._seeks != seeks:
                        continue  # fetched before a seek: the seek decides what comes next
                    acking = acks_enabled_for(tp.topic)
                    if acking and self._positioned.get(tp) != generation:
                        continue  # assigned but not yet seeked where its stream goes on: module doc
                    if not self.flow_active or self.suspend_flow.is_set():
                        self._not_handed(tp, message.offset)
                        continue
                    offset = message.offset
                    last = read[tp]
                    if last is not None and offset < last:
                        continue  # before the stream's position: it had this one
                    expected = self._next_offset.get(tp)
                    if expected is not None and offset > expected and acking:
                        seen = self._jumped.get(tp)
                        times = seen[2] + 1 if seen and seen[:2] == (expected, offset) else 1
                        self._jumped[tp] = (expected, offset, times)
                        if times < JUMPS_BEFORE_HOLE:
                            # not the record the stream needs next (a fetch that crossed a
                            # seek): fetch from there again rather than guess it is a hole
                            self._reposition = True
                            continue
                        log.warning(  # the same jump again and again: those offsets are gone
                            "records_missing_from_partition",
                            topic=tp.topic,
                            partition=tp.partition,
                            first=expected,
                            end=offset,
                        )
                        self._hole(tp, expected, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if not await self._hand_over(deliver, message):
                        self._not_handed(tp, offset)
                        continue
                    if self._seeks != seeks:
                        continue  # handed over, but a seek meanwhile says where to go on from
                    read[tp] = offset
                    self._next_offset[tp] = offset + 1
                    handed += 1
                    if handed % 100 == 0:
                        await asyncio.sleep(0)
                if self.app.consumer_generation_id != generation:
                    self._reposition = True  # getmany stopped early; the rest comes again
                self.diag.unset_flag("FETCHING")
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag("FETCHING")
            if self._interrupt is not None:
                self._interrupt.cancel()
                self._interrupt = None


@types.coroutine
def _resumed(coro, waiting_for):
    """The rest of `coro`, started by hand and now waiting for `waiting_for`, as an awaitable
    a task can run: what the task sends or throws in (a result, its cancellation) goes on to
    `coro`, exactly as if the task had run it from the start."""
    while True:
        try:
            sent = yield waiting_for
        except BaseException as exc:
            try:
                waiting_for = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting_for = coro.send(sent)
            except StopIteration as stop:
                return stop.value
