"""Batches of whatever is ready: no record waits for company that is not there yet.

Faust's `take_events(max_, within)` hands a batch out when it is full or when a timer of
`within` fires. A lone request therefore waited up to `within` on every hop that took it this way
(5 ms, most of a `Prefer: wait` round trip's spread), and a shorter `within` wakes the worker
that many times a second for nothing, and cuts batches short under load.

`ready_batches(stream, max_)` hands a batch out as soon as nothing more is waiting in the
stream's queue, or once it holds `max_` events. While the agent works on a batch, the next
records queue up, so the batches grow with the load by themselves: one event when a request
comes alone, up to `max_` when the worker is behind. A timer (`BACKSTOP_S`) still hands out what
was collected when no record came to close the batch: a rebalance empties the queue or skips
the records behind one already collected, and Faust then waits for that one's acknowledgement.
Acknowledgement is Faust's: every event of a batch is acknowledged when the agent asks for the
next batch, or leaves (`streams.acks.held` keeps a batch the agent could not finish). Use it
under `contextlib.aclosing`, so that an agent that crashes detaches it from the stream at once
(Faust restarts the agent on the same stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from faust.types import EventT, StreamT

BACKSTOP_S = 0.05


def ready_batches(stream: StreamT, max_: int) -> AsyncGenerator[list[EventT], None]:
    batches = _ready_batches(stream, max_)
    agens = getattr(stream, "_active_agens", None)
    if agens is not None:  # Faust closes what is left of it when the stream stops, as its own
        agens.add(batches)
    return batches


async def _ready_batches(stream: StreamT, max_: int) -> AsyncGenerator[list[EventT], None]:
    events: list[EventT] = []
    closed = asyncio.Event()  # `events` goes out now: `max_` of them, or nothing more waiting
    free = asyncio.Event()  # no batch is out: an event may join `events`
    free.set()
    nothing_waiting = stream.channel.queue.empty

    async def collect(value):
        if not free.is_set():
            await stream.wait(free)  # the backstop handed a batch out without this one's say
        event = stream.current_event
        if event is None:
            raise RuntimeError("a stream processor ran without its event")
        events.append(event)
        if len(events) >= max_ or nothing_waiting():
            free.clear()
            closed.set()
            await stream.wait(free)  # the next records queue up meanwhile
        return value

    acks_before = stream.enable_acks
    stream.enable_acks = False  # acknowledged below, once the agent is done with the batch
    stream.add_processor(collect)
    stream._enable_passive(aiter(stream.channel))  # Faust's drain, as its take_events starts it
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(closed, timeout=BACKSTOP_S)
            if not events:
                continue
            free.clear()
            try:
                yield list(events)
            finally:
                for event in events:
                    await stream.ack(event)
                events.clear()
                closed.clear()
                free.set()
    finally:
        stream.enable_acks = acks_before
        stream._processors.remove(collect)
        free.set()  # a collector still waiting goes on (it is no longer among the processors)
