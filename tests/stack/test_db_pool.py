"""kopilka.core.db.create_pool: a stateless pool skips asyncpg's reset round trip, and still
never hands out a connection with an open transaction."""

from __future__ import annotations

import pytest

from kopilka.core import db

pytestmark = pytest.mark.connected


@pytest.fixture(scope="module")
def dsn(stack) -> str:
    return stack.settings().database_url.get_secret_value()


async def _setting_after_release(pool) -> str:
    async with pool.acquire() as conn:
        await conn.execute("SET application_name = 'left-behind'")
    async with pool.acquire() as conn:
        return await conn.fetchval("SHOW application_name")


@pytest.mark.parametrize("stateless", [False, True])
async def test_a_stateless_pool_does_not_reset_what_a_session_set(dsn, stateless):
    pool = await db.create_pool(dsn, min_size=1, max_size=1, stateless=stateless)
    try:
        left = await _setting_after_release(pool)
    finally:
        await pool.close()
    assert (left == "left-behind") is stateless  # reset, unless stateless: no round trip


async def test_a_stateless_pool_rolls_back_a_transaction_left_open(dsn):
    pool = await db.create_pool(dsn, min_size=1, max_size=1, stateless=True)
    try:
        conn = await pool.acquire()
        tx = conn.transaction()
        await tx.start()
        left_open = await conn.fetchval("SELECT txid_current()")  # the transaction gets an id
        await pool.release(conn)  # released mid-transaction (a cancelled flush)
        async with pool.acquire() as again:
            assert not again.is_in_transaction()
            # on the server too: this is a new transaction, with no id yet
            assert left_open is not None
            assert await again.fetchval("SELECT txid_current_if_assigned()") is None
    finally:
        await pool.close()
