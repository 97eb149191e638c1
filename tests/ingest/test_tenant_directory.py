"""The tenant directory: known shops served stale while the database is down, unknown keys
cached apart (and briefly), the database not hammered while it is down."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest

from kopilka.directory.tenants import DirectoryUnavailable, TenantDirectory, digest


def row(tenant_id: str, name: str = "Shop") -> dict:
    return {
        "id": tenant_id,
        "name": name,
        "active": True,
        "rules": json.dumps({}),
        "revision": 1,
        "signature_mode": "off",
        "rate_limit_per_minute": None,
        "rate_limit_burst": None,
        "max_body_bytes": None,
        "signing_secrets": [],
    }


class FakePool:
    """Answers tenant look-ups from a dict of digests, or fails as a dead database does."""

    def __init__(self) -> None:
        self.rows: dict[bytes, dict] = {}
        self.queries = 0
        self.error: BaseException | None = None
        self.delay_s = 0.0

    async def fetchrow(self, _query: str, *args):
        self.queries += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return self.rows.get(args[0])


SECRET = "whk_" + "a" * 32


@pytest.fixture
def pool() -> FakePool:
    pool = FakePool()
    pool.rows[digest(SECRET)] = row("t-1")
    return pool


def directory(pool, **kw) -> TenantDirectory:
    kw.setdefault("ttl_s", 0.05)
    kw.setdefault("backoff_s", 0.0)
    return TenantDirectory(pool, **kw)


async def test_fresh_hits_cost_no_query(pool):
    tenants = directory(pool, ttl_s=60)
    assert (await tenants.by_secret(SECRET)).id == "t-1"
    assert (await tenants.by_secret(SECRET)).id == "t-1"
    assert pool.queries == 1


async def test_requests_that_find_the_entry_expired_together_share_one_query(pool):
    tenants = directory(pool, ttl_s=60)
    pool.delay_s = 0.05
    found = await asyncio.gather(*(tenants.by_secret(SECRET) for _ in range(50)))
    assert {t.id for t in found} == {"t-1"} and pool.queries == 1
    pool.error = ConnectionRefusedError(111, "refused")  # a shared failure fails them all
    fresh = directory(pool, ttl_s=60)
    with pytest.raises(DirectoryUnavailable):
        await asyncio.gather(*(fresh.by_secret(SECRET) for _ in range(5)))
    assert pool.queries == 2


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        asyncpg.exceptions.CannotConnectNowError("starting up"),
        asyncpg.exceptions.TooManyConnectionsError("53300"),
        asyncpg.InterfaceError("pool is closing"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_known_shop_is_served_stale_while_the_database_fails(pool, error):
    tenants = directory(pool)
    await tenants.by_secret(SECRET)
    await asyncio.sleep(0.06)  # past the TTL: a refresh is due
    pool.error = error
    for _ in range(3):
        assert (await tenants.by_secret(SECRET)).id == "t-1"
    assert tenants.stale_served == 3
    assert tenants.knows(tenants.secret_key(SECRET))


async def test_an_unknown_key_while_the_database_fails_is_unavailable(pool):
    tenants = directory(pool)
    pool.error = ConnectionRefusedError(111, "refused")
    with pytest.raises(DirectoryUnavailable):
        await tenants.by_secret("whk_" + "b" * 32)
    with pytest.raises(OSError):  # every retry policy that knows connection loss retries it
        await tenants.by_id("6f1c1d3e-5b7a-4c1e-9d2a-0b7c3e8f9a10")


async def test_a_hung_database_is_given_up_on_after_the_timeout(pool):
    tenants = directory(pool, timeout_s=0.05)
    await tenants.by_secret(SECRET)
    await asyncio.sleep(0.06)
    pool.delay_s = 10
    started = time.monotonic()
    assert (await tenants.by_secret(SECRET)).id == "t-1"  # stale, after 50 ms
    assert time.monotonic() - started < 1
    with pytest.raises(DirectoryUnavailable):
        await tenants.by_secret("whk_" + "c" * 32)


async def test_after_a_failure_the_database_is_left_alone_for_the_backoff(pool):
    tenants = directory(pool, backoff_s=60)
    await tenants.by_secret(SECRET)
    await asyncio.sleep(0.06)
    pool.error = ConnectionRefusedError(111, "refused")
    await tenants.by_secret(SECRET)
    queries = pool.queries
    for _ in range(10):
        assert (await tenants.by_secret(SECRET)).id == "t-1"
    with pytest.raises(DirectoryUnavailable):
        await tenants.by_secret("whk_" + "d" * 32)
    assert pool.queries == queries


async def test_the_database_back_refreshes_the_tenant(pool):
    tenants = directory(pool)
    await tenants.by_secret(SECRET)
    await asyncio.sleep(0.06)
    pool.error = ConnectionRefusedError(111, "refused")
    assert (await tenants.by_secret(SECRET)).name == "Shop"
    pool.error = None
    pool.rows[digest(SECRET)] = row("t-1", name="Renamed")
    assert (await tenants.by_secret(SECRET)).name == "Renamed"


async def test_unknown_keys_are_cached_apart_and_never_evict_real_shops(pool):
    tenants = directory(pool, ttl_s=60, maxsize=10, negative_maxsize=5, negative_ttl_s=60)
    await tenants.by_secret(SECRET)
    guesses = [f"whk_guess{i:028d}" for i in range(100)]
    for guess in guesses:
        assert await tenants.by_secret(guess) is None
    queries = pool.queries
    assert (await tenants.by_secret(SECRET)).id == "t-1"  # still cached: no query
    assert pool.queries == queries
    assert await tenants.by_secret(guesses[-1]) is None  # recent guesses: no query either
    assert pool.queries == queries


async def test_an_unknown_key_is_found_once_its_short_negative_entry_expires(pool):
    tenants = directory(pool, negative_ttl_s=0.05)
    new = "whk_" + "n" * 32
    assert await tenants.by_secret(new) is None
    pool.rows[digest(new)] = row("t-new")
    assert await tenants.by_secret(new) is None  # remembered as unknown, briefly
    await asyncio.sleep(0.06)
    assert (await tenants.by_secret(new)).id == "t-new"


async def test_a_revoked_key_is_forgotten_not_served_stale(pool):
    tenants = directory(pool)
    await tenants.by_secret(SECRET)
    await asyncio.sleep(0.06)
    del pool.rows[digest(SECRET)]  # rotated away, grace over
    assert await tenants.by_secret(SECRET) is None
    assert not tenants.knows(tenants.secret_key(SECRET))
    pool.error = ConnectionRefusedError(111, "refused")
    await asyncio.sleep(2.1)  # past the default negative TTL
    with pytest.raises(DirectoryUnavailable):
        await tenants.by_secret(SECRET)


def test_digest_of_text_that_is_not_utf8_does_not_fail():
    assert digest("whk_\udcff") != digest("whk_")
