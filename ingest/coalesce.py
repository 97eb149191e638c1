"""Calls that concurrent requests make to a shared service, gathered into one round trip.

Each request submits its item and awaits its own answer. The items submitted in one turn of the
event loop, and those that arrive while a call is in flight, go together in the next call (up
to `max_batch`), so under load many requests share one round trip and the client library's
per-call cost (for redis-py that was most of the ingress's Redis time); a lone request still
goes at once. `send` gets the items in the order they were submitted and returns one answer per
item, in that order; what it raises reaches every request of its batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self, send: Callable[[list[T]], Awaitable[Sequence[R]]], max_batch: int = 256
    ) -> None:
        self._send, self.max_batch = send, max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._sending = False

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if not self._sending:
            self._sending = True
            loop.call_soon(self._send_next)  # after every submit of this turn
        return await future

    def _send_next(self) -> None:
        if not self._pending:
            self._sending = False
            return
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        task = asyncio.ensure_future(self._call(batch))
        task.add_done_callback(lambda _task: self._send_next())

    async def _call(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            answers = await self._send([item for item, _ in batch])
        except BaseException as exc:  # never leave a request waiting on a lost batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # the request may have gone meanwhile
                future.set_result(answer)
