"""Postgres access shared by every process: pools and migrations."""

from __future__ import annotations

import asyncio
from importlib import resources

import asyncpg
import orjson

from kopilka.core.logging import get_logger

log = get_logger(__name__)

# The connection failed, not the statement: nothing about the data is wrong.
CONNECTION_LOST = (
    OSError,  # ConnectionError, refused, reset, no route
    TimeoutError,  # asyncio.TimeoutError is TimeoutError on 3.11
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InterfaceError,  # the connection closed under us, pool closing
    # "cannot switch to state N; another operation is in progress": a connection left mid-
    # operation by a stall or a cancellation (seen while Postgres stopped); the pool replaces it
    asyncpg.exceptions.InternalClientError,
)
# What "the database could not answer" looks like to a loop or a request that waits it out or
# answers 503: a lost connection, or any refusal from Postgres (each caller tells the transient
# ones from the rest where it must). One definition: the hand-written copies of it missed
# InternalClientError, and the dispatcher's claim loop died of it while Postgres was stopped.
DATABASE_DOWN = (*CONNECTION_LOST, asyncpg.PostgresError)

_MIGRATION_LOCK = 0x6B6F70696C6B61  # "kopilka": one migrator at a time across processes


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a pool without session state does on release, after asyncpg has rolled back an
    open transaction and dropped listeners: nothing more (no `RESET ALL; UNLISTEN *; ...`)."""


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, stateless: bool = False
) -> asyncpg.Pool:
    """A pool whose connections speak jsonb as Python values. `stateless`: its users never
    leave session state behind (no SET, LISTEN, advisory lock or cursor outside a
    transaction), so a released connection is not reset: asyncpg's reset is a round trip to
    Postgres per acquire, which was a quarter of the worker's Postgres writes under load."""
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        reset=_keep_session if stateless else None,
    )


async def wait_for_database(dsn: str, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
            await conn.close()
            return
        except (TimeoutError, OSError, asyncpg.PostgresError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


def _migrations() -> list[tuple[str, str]]:
    files = resources.files("kopilka.core") / "migrations"
    return sorted(
        (f.name.removesuffix(".sql"), f.read_text("utf-8"))
        for f in files.iterdir()
        if f.name.endswith(".sql")
    )


async def migrate(dsn: str) -> list[str]:
    """Apply the pending migrations in order, each in its own transaction; return their names."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in _migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
            log.info("migration_applied", version=version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
    return applied
