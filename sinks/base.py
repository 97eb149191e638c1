"""The protocol of a sink that is fed records, whoever feeds it.

Modelled on quix-streams' `BaseSink`: the feeder hands records over one by one and says when to
write them; the sink buffers, writes and lets go. Here the feeder is an agent in `streams/`, a
replay command or a test; the sink knows nothing of Kafka, Faust or offsets, and acknowledging,
retrying and dead-lettering stay with the feeder (`streams/read_model.py`).

- `setup()`: find what the sink writes to (a pool, a client). Called before a flush, as often as
  the feeder likes: once it has succeeded it does nothing. May fail for a transient reason; the
  feeder retries it (`kopilka.core.retry.until_done`).
- `add(value)`: one record's bytes into the buffer. A record the sink cannot read raises
  (ValueError and the like) and leaves the buffer as it was.
- `flush()`: write everything added, at once, and empty the buffer; returns the records written.
  When it raises, the buffer is kept, so a second flush retries the same batch.
- `clear()`: drop what was added and not written, so the feeder can split a batch that failed
  record by record (quix-streams' sinks drop their batch the same way when paused).
- `close()`: let go of what `setup()` found and of anything still buffered.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Sink(Protocol):
    async def setup(self) -> None: ...

    def add(self, value: bytes) -> None: ...

    async def flush(self) -> int: ...

    def clear(self) -> None: ...

    async def close(self) -> None: ...
