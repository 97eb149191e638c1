"""Batches of whatever is ready: no record waits for company that is not there yet.

Faust's `take_events(max_, within)` hands a batch out when it is full or when a timer of
`within` fires. A lone request therefore waited up to `within` on every hop that took it this way
(5 ms, most of a `Prefer: wait` round trip's spread), and a shorter `within` wakes the worker
that many times a second for nothing, and cuts batches short under load.

`ready_batches(stream, max_)` hands a batch out as soon as nothing more is waiting in the
stream's queue, or once it holds `max_` events. While the agent works on a batch, the next
records queue up, so the batches grow with the load by themselves: one event when a request
comes alone, up to `max_` when the worker is behind. Acknowledgement is Faust's: every event of
a batch is acknowledged when the agent asks for the next batch (`streams.acks.held` keeps a
batch the agent could not finish).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from faust.types import EventT, StreamT

# how often a waiting loop looks whether the stream was stopped (Faust's own wait ends then too)
_STOP_CHECK_S = 1.0


async def ready_batches(stream: StreamT, max_: int) -> AsyncIterator[list[EventT]]:
    events: list[EventT] = []
    ready = asyncio.Event()  # `events` is a batch to hand out
    done = asyncio.Event()  # the agent finished with it
    nothing_waiting = stream.channel.queue.empty

    async def collect(value):
        event = stream.current_event
        if event is None:
            raise RuntimeError("a stream processor ran without its event")
        events.append(event)
        if len(events) >= max_ or nothing_waiting():
            done.clear()
            ready.set()
            await stream.wait(done)  # the next records queue up meanwhile
        return value

    stream.enable_acks = False  # acknowledged below, once the agent is done with the batch
    stream.add_processor(collect)
    stream._enable_passive(aiter(stream.channel))  # Faust's drain, as its take_events starts it
    while not stream.should_stop:
        await stream.wait_for_stopped(ready, timeout=_STOP_CHECK_S)
        if not ready.is_set():
            continue
        try:
            yield list(events)
        finally:
            for event in events:
                await stream.ack(event)
            events.clear()
            ready.clear()
            done.set()
