"""The webhook-id replay guard on the real Redis: shared by every guard that uses it."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from ingest.replay import PENDING, RedisReplayGuard


async def test_two_guards_on_one_redis_see_each_others_claims(stack):
    url = stack.env["REDIS_URL"]
    first, second = Redis.from_url(url), Redis.from_url(url)
    try:
        a, b = RedisReplayGuard(first, window_s=60), RedisReplayGuard(second, window_s=60)
        msg = f"msg_{uuid.uuid4().hex}"
        assert await a.claim("t", msg, "e1") is None
        assert await b.claim("t", msg, "e2") == PENDING + "e1"
        await a.confirm("t", msg, "e1")
        assert await b.claim("t", msg, "e3") == "e1"
        assert 0 < await first.pttl(f"kopilka:webhook-id:t:{msg}") <= 60_000  # confirm kept TTL
        await a.release("t", msg)
        assert await b.claim("t", msg, "e4") is None
    finally:
        await first.aclose()
        await second.aclose()
