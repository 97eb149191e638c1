"""Redis unreachable: the limiter and the replay guard fall back to process memory, and say so."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from ingest.ratelimit import Quota, RedisLimiter
from ingest.replay import RedisReplayGuard
from kopilka.devstack import devservices


@pytest.fixture
async def dead_redis():
    """A client for a port nothing listens on: every call fails to connect, at once."""
    client = Redis.from_url(
        f"redis://127.0.0.1:{devservices.free_port()}/0", socket_connect_timeout=0.2
    )
    yield client
    await client.aclose()


async def test_limiter_keeps_limiting_in_memory(dead_redis, capsys):
    limiter, quota = RedisLimiter(dead_redis), Quota(per_minute=1, burst=2)
    decisions = [(await limiter.hit("t", quota)).allowed for _ in range(3)]
    assert decisions == [True, True, False]
    printed = capsys.readouterr()
    assert (printed.out + printed.err).count("rate_limit_redis_unavailable") == 1  # once a minute


async def test_replay_guard_keeps_guarding_in_memory(dead_redis):
    guard = RedisReplayGuard(dead_redis, window_s=60)
    assert await guard.claim("t", "msg_1", "e1") is None
    await guard.confirm("t", "msg_1", "e1")
    assert await guard.claim("t", "msg_1", "e2") == "e1"
