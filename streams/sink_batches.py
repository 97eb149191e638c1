"""How a sink agent writes one batch, whatever its sink (streams.read_model, streams.dead_letters).

The sink's setup and flush are retried while they fail for a transient reason
(kopilka.core.retry), and the agent acknowledges the batch only afterwards. A flush failing
for a permanent reason is split, record by record, and `refused` is told of each record the
database still refuses, so that one record cannot hold back the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faust.types import EventT

from kopilka.core.logging import get_logger
from kopilka.core.retry import until_done
from sinks.base import Sink

log = get_logger(__name__)


async def write_batch(
    sink: Sink,
    flush_step: str,
    events: list[EventT],
    refused: Callable[[EventT, Exception], Awaitable[None]],
) -> None:
    """Flush what `events` added to `sink` (`flush_step`: the retry metric's step label)."""
    await until_done(sink.setup, "connect")
    try:
        await until_done(sink.flush, flush_step)
    except Exception:
        log.exception("sink_batch_failed", sink=type(sink).__name__, records=len(events))
        sink.clear()
        for event in events:
            try:
                sink.add(event.value)
                await until_done(sink.flush, flush_step)
            except Exception as exc:
                sink.clear()
                await refused(event, exc)
