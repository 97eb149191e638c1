"""The Redis limiter against a real redis-server: hits that arrive together share one call."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from ingest.ratelimit import MAX_BATCH, Quota, RedisLimiter

pytestmark = pytest.mark.connected  # a real redis-server (tests/ingest/conftest.py)


async def _script_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))


async def test_concurrent_hits_share_calls_and_keep_the_exact_limit(redis):
    limiter, quota = RedisLimiter(redis), Quota(per_minute=60, burst=5)
    decisions = await asyncio.gather(*(limiter.hit("shop", quota) for _ in range(40)))
    assert [d.allowed for d in decisions].count(True) == 5
    assert sorted(d.remaining for d in decisions if d.allowed) == [0, 1, 2, 3, 4]
    refused = [d for d in decisions if not d.allowed]
    assert all(d.retry_after_s >= 1 and "Retry-After" in d.headers() for d in refused)
    assert await _script_calls(redis) <= 3  # 40 hits, one or two round trips (+ a NOSCRIPT)


async def test_shops_in_one_batch_keep_their_own_buckets(redis):
    limiter, quota = RedisLimiter(redis), Quota(per_minute=1, burst=1)
    decisions = await asyncio.gather(*(limiter.hit(f"shop-{i % 3}", quota) for i in range(9)))
    allowed = [f"shop-{i % 3}" for i, d in enumerate(decisions) if d.allowed]
    assert sorted(allowed) == ["shop-0", "shop-1", "shop-2"]


async def test_a_batch_larger_than_the_cap_is_split(redis):
    limiter, quota = RedisLimiter(redis), Quota(per_minute=60, burst=MAX_BATCH + 10)
    decisions = await asyncio.gather(*(limiter.hit("big", quota) for _ in range(MAX_BATCH + 20)))
    assert [d.allowed for d in decisions].count(True) == MAX_BATCH + 10
    assert await _script_calls(redis) >= 2


async def test_sequential_hits_count_down(redis):
    limiter, quota = RedisLimiter(redis), Quota(per_minute=60, burst=3)
    remaining = [(await limiter.hit("one", quota)).remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    assert not (await limiter.hit("one", quota)).allowed
