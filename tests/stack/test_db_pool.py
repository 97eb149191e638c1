"""kopilka.core.db pools against the session's Postgres: a release costs no extra round trip."""

from __future__ import annotations

import pytest

from kopilka.core import db

pytestmark = pytest.mark.connected


@pytest.fixture
async def pool(stack):
    p = await db.create_pool(stack.settings().database_url.get_secret_value(), max_size=1)
    yield p
    await p.close()


async def test_a_released_connection_skips_the_reset_query(pool):
    async with pool.acquire() as conn:
        await conn.execute("SET application_name = 'kopilka-pool-test'")
    async with pool.acquire() as conn:  # the same connection (max_size=1), not RESET ALL
        assert await conn.fetchval("SHOW application_name") == "kopilka-pool-test"


async def test_a_transaction_left_open_is_still_rolled_back(pool):
    async with pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMP TABLE left_open (x int)")
    async with pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
