"""Retrying an I/O step until it succeeds: a stream partition waits rather than skips."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from kopilka.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")

# Errors that pass by themselves: the database restarting or unreachable for a while.
TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


async def until_done(step: Callable[[], Awaitable[T]], what: str, max_delay_s: float = 5.0) -> T:
    delay, attempt = 0.1, 0
    while True:
        try:
            return await step()
        except TRANSIENT as exc:
            attempt += 1
            log.warning(
                "retrying",
                step=what,
                attempt=attempt,
                error=type(exc).__name__,
                detail=str(exc)[:200],
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
