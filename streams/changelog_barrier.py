"""No offset is committed before the table writes made for it are on the broker.

Faust commits a partition's offsets after `producer.flush()`, which drains its send-soon buffer
(where table changelog writes wait) and then aiokafka's. But the buffer's drain gives up after
0.1 s without a send (faust/transport/producer.py `flush_atmost`), and a record taken off the
buffer but not yet handed to aiokafka is counted nowhere. Under load both happen: offsets were
committed while the changelog writes of the commands they cover were still in this process,
and a kill -9 then rolled a customer's state back for commands that would never come again
(the fault suite's kill -9 scenarios: a spend rejected for want of the purchase before it).

`DurableTable` remembers every changelog write until the broker acknowledged it, and
`wait_for_changelog` (called by the app's producer flush, i.e. before every commit) waits for
all of them. A write the broker refused raises: the commit fails, nothing is acknowledged, and
the records come again to whoever owns the partition next.
"""

from __future__ import annotations

import asyncio

import faust

from kopilka.core.logging import get_logger

log = get_logger(__name__)

_pending: set[asyncio.Future] = set()
_refused: list[BaseException] = []  # writes the broker refused: no commit may happen after them


def _settled(fut: asyncio.Future) -> None:
    _pending.discard(fut)
    if not fut.cancelled() and (exc := fut.exception()) is not None:
        _refused.append(exc)


class DurableTable(faust.Table):
    """A faust.Table whose changelog writes the commit barrier can wait for."""

    def send_changelog(self, *args, **kwargs):
        return track(super().send_changelog(*args, **kwargs))


def track(fut: asyncio.Future) -> asyncio.Future:
    """Remember a changelog write until the broker has answered for it."""
    if fut.done():
        _settled(fut)
    else:
        _pending.add(fut)
        fut.add_done_callback(_settled)
    return fut


async def wait_for_changelog(warn_after_s: float = 10.0) -> None:
    """Wait until every changelog write made so far is on the broker (or raise why not)."""
    waiting = set(_pending)
    while waiting:
        _, waiting = await asyncio.wait(waiting, timeout=warn_after_s)
        if waiting:
            log.warning("changelog_writes_unacknowledged", pending=len(waiting))
    if _refused:
        raise _refused[0]
