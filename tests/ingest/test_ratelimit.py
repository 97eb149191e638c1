"""The GCRA limiter's arithmetic and its headers (the in-process backend; Redis in tests/e2e)."""

from __future__ import annotations

from ingest.ratelimit import LocalLimiter, Quota


async def test_burst_then_refused_with_retry_after():
    limiter, quota = LocalLimiter(), Quota(per_minute=60, burst=3)
    decisions = [await limiter.hit("t1", quota) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    refused = decisions[-1]
    assert refused.retry_after_s == 1  # one request per second refills
    headers = refused.headers()
    assert headers["Retry-After"] == "1"
    assert headers["RateLimit-Policy"] == '"tenant";q=3;w=3'
    assert headers["RateLimit"].startswith('"tenant";r=0;t=')


async def test_tenants_have_separate_buckets():
    limiter, quota = LocalLimiter(), Quota(per_minute=1, burst=1)
    assert (await limiter.hit("a", quota)).allowed
    assert not (await limiter.hit("a", quota)).allowed
    assert (await limiter.hit("b", quota)).allowed


async def test_allowed_answers_carry_no_retry_after():
    decision = await LocalLimiter().hit("t", Quota(per_minute=100, burst=100))
    assert decision.allowed and "Retry-After" not in decision.headers()
    assert decision.headers()["RateLimit"] == '"tenant";r=99;t=1'
