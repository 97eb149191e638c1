"""One error taxonomy: what passes by itself is retried, what is in the data is not.

Transient: the database or the broker away, overloaded, failing over or cancelling a statement
(connection loss, timeouts, SQLSTATE classes 08, 40, 53, 57P0x, 55P03, 57014, 25006, and any
Kafka error that says it is retriable). A step that fails with one of them is tried again with
capped exponential backoff, for as long as it takes: a stream partition waits rather than skips,
so no record is ever acknowledged that was neither applied nor dead-lettered.

Permanent: everything else (a constraint the data violates, a value Postgres refuses, a bug).
`until_done` raises it at once; the caller dead-letters the record (`streams.dead_letters`).

Core, not stream code: the stream's agents and the sinks they feed classify errors alike.
Importing it imports prometheus_client (RETRIES): the worker's modules and the sinks may, the
CLI's own imports may not (tests/cli/test_cli_imports.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from kopilka.core.db import CONNECTION_LOST
from kopilka.core.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")

RETRIES = Counter(
    "kopilka_retries_total", "Transient failures retried (kopilka.core.retry), by step", ["step"]
)

_TRANSIENT_CLASSES = ("08", "40", "53")  # connection, rollback (deadlock, serialization), resources
_TRANSIENT_STATES = frozenset(
    {
        "57P01",  # admin_shutdown: "terminating connection due to administrator command"
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up, in recovery
        "57P04",  # database_dropped (mid-failover)
        "57P05",  # idle_session_timeout
        "57014",  # query_canceled: statement_timeout, pg_cancel_backend
        "55P03",  # lock_not_available: lock_timeout
        "25006",  # read_only_sql_transaction: a replica during failover
    }
)


def is_transient(exc: BaseException) -> bool:
    """True when trying again later may succeed without anything about the data changing."""
    if isinstance(exc, CONNECTION_LOST):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    return False


async def until_done(
    step: Callable[[], Awaitable[T]],
    what: str,
    *,
    first_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
) -> T:
    """`step()` once it succeeds; transient failures are retried, anything else is raised."""
    delay, attempt = first_delay_s, 0
    while True:
        try:
            return await step()
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            RETRIES.labels(what).inc()
            log.warning(
                "retrying",
                step=what,
                attempt=attempt,
                error=type(exc).__name__,
                sqlstate=getattr(exc, "sqlstate", None),
                detail=str(exc)[:200],
                next_in_s=round(delay, 2),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
