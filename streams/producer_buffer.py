"""Faust's producer buffer (the ledger table's changelog writes), waited for without a timer each.

A table write is synchronous, so Faust queues its changelog record in the producer's buffer,
which a task of its own sends; before handing each fetched record to a stream, the conductor
waits while more than 100 are queued. Faust's wait took the queued records one by one, each
behind its own `asyncio.wait_for` (a task and a timer per record), and logged a warning each
time. The ledger applies a batch record's commands (up to 200, two table writes each) in one
step, so under load that wait came every few records: `wait_for`, the tasks it made and the
settings look-up behind the buffer's `size` were about 4 % of the worker's main thread (py-spy).
`EbbingBuffer` waits for the same thing with one timer per 0.1 s of waiting, within Faust's
limit: it gives up after 0.1 s without a record sent, as Faust's did.
"""

from __future__ import annotations

import asyncio

from faust.transport.producer import ProducerBuffer

STALL_S = 0.1  # Faust's: a wait ends after this long without a record sent


class EbbingBuffer(ProducerBuffer):
    @property
    def size(self) -> int:
        return self.pending.qsize()  # Faust's looks its settings up on every call (not threaded)

    async def wait_until_ebb(self) -> None:
        if self.pending.qsize() > self.max_messages:
            await self._drain_to(self.max_messages)

    async def flush(self) -> None:
        await self._drain_to(0)

    async def _drain_to(self, size: int) -> None:
        """Until at most `size` records are queued, or none was sent for STALL_S: one timer
        per STALL_S, not one per record (the buffer's task wakes this after every record)."""
        queued = self.pending.qsize
        if queued() <= size:
            return
        if self.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")  # as Faust's
        loop = asyncio.get_running_loop()
        stalled = sent = False

        def check() -> None:
            nonlocal stalled, sent, timer
            if sent:
                sent = False
                timer = loop.call_later(STALL_S, check)
            else:
                stalled = True
                self.message_sent.set()

        timer = loop.call_later(STALL_S, check)
        try:
            while queued() > size:
                self.message_sent.clear()
                await self.message_sent.wait()
                if stalled:
                    return
                sent = True
        finally:
            timer.cancel()


def ebbing(buffer: ProducerBuffer) -> ProducerBuffer:
    """`buffer` (a Faust producer's, not yet started), waiting as EbbingBuffer does; left as it
    is for a threaded producer, whose queue is another."""
    if not buffer.app.conf.producer_threaded:
        buffer.__class__ = EbbingBuffer
    return buffer
