"""Acknowledge a record only once it was applied or dead-lettered, whatever ends the agent.

Faust acknowledges what `take_events` / `events()` handed out however the agent leaves it:
done, an exception, a shutdown or a rebalance cancelling it mid-retry. `held(events)` keeps one
more reference on each message while the block runs, released only when it completes: a block
left any other way leaves its messages unacknowledged, their offsets uncommitted, and they come
again (to this worker after the re-seek in `streams.app.App`, or to the partition's next owner),
which every stage absorbs, its ids being derived from its input.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from faust.types import EventT


@contextmanager
def held(events: Sequence[EventT]) -> Iterator[None]:
    for event in events:
        event.message.incref()
    yield  # no finally: an exception leaves the extra reference, so the batch is not acked
    for event in events:
        event.message.decref()
