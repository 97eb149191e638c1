"""`async with one_connection(pool_or_conn) as conn`: one connection, from a pool or as given.

The directory's writes take either, so a caller can make them part of its own transaction."""

from __future__ import annotations

from typing import Any

import asyncpg


class one_connection:  # lower case: used as a function, `async with one_connection(pool)`
    def __init__(self, pool_or_conn: Any) -> None:
        self.source, self._pooled = pool_or_conn, None

    async def __aenter__(self) -> asyncpg.Connection:
        if isinstance(self.source, asyncpg.Pool):
            self._pooled = await self.source.acquire()
            return self._pooled
        return self.source

    async def __aexit__(self, *exc: object) -> None:
        if self._pooled is not None:
            await self.source.release(self._pooled)
