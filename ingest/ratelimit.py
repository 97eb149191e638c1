"""Per-tenant rate limits: GCRA (a token bucket without a refill timer), in Redis or in memory.

A tenant may make `burst` requests at once and then one every `60 / per_minute` seconds; a
request is one HTTP request whatever it carries (a batch counts once). With Redis every ingress
process shares one bucket per tenant: the check is one Lua script, atomic, timed by Redis's clock
(hits that arrive together share one call).
Without Redis (or while Redis is unreachable) each process keeps its own buckets.

The answer carries the IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers):
`RateLimit-Policy: "tenant";q=<burst>;w=<seconds to refill it>` and
`RateLimit: "tenant";r=<remaining>;t=<seconds until the bucket is full>`, plus `Retry-After` on 429.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ingest.coalesce import Coalescer
from kopilka.core.logging import get_logger

log = get_logger(__name__)

_US = 1_000_000
POLICY = "tenant"


@dataclass(frozen=True)
class Quota:
    per_minute: int
    burst: int

    @property
    def interval_us(self) -> int:
        return max(1, 60 * _US // self.per_minute)

    @property
    def capacity_us(self) -> int:
        return self.burst * self.interval_us


@dataclass(frozen=True)
class Decision:
    allowed: bool
    quota: Quota
    remaining: int
    reset_s: int  # until the bucket is full again
    retry_after_s: int  # 0 when allowed

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Policy": _policy(self.quota),
            "RateLimit": f'"{POLICY}";r={self.remaining};t={self.reset_s}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


@lru_cache(maxsize=1024)
def _policy(quota: Quota) -> str:
    """The RateLimit-Policy value: the same for every request of a shop."""
    return f'"{POLICY}";q={quota.burst};w={math.ceil(quota.capacity_us / _US)}'


def _decide(quota: Quota, allowed: int, slack_us: int, reset_us: int) -> Decision:
    """From the script's answer: slack is spare capacity (allowed) or the wait (refused)."""
    if allowed:
        return Decision(True, quota, slack_us // quota.interval_us, math.ceil(reset_us / _US), 0)
    return Decision(False, quota, 0, math.ceil(reset_us / _US), max(1, math.ceil(slack_us / _US)))


class Limiter(Protocol):
    backend: str

    async def hit(self, tenant_id: str, quota: Quota) -> Decision: ...


class LocalLimiter:
    """This process's buckets: exact for one ingress process, per process with several."""

    backend = "in-process"

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tat: dict[str, int] = {}
        self._max_keys = max_keys

    async def hit(self, tenant_id: str, quota: Quota) -> Decision:
        now = time.monotonic_ns() // 1000
        tat = max(self._tat.get(tenant_id, now), now)
        wait = tat + quota.interval_us - now
        if wait > quota.capacity_us:
            return _decide(quota, 0, wait - quota.capacity_us, tat - now)
        if len(self._tat) >= self._max_keys:
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        self._tat[tenant_id] = now + wait
        return _decide(quota, 1, quota.capacity_us - wait, wait)


# KEYS: the buckets, one per hit (a key may repeat: each hit sees the one before it);
# ARGV: each hit's interval and capacity in microseconds, in pairs.
# Returns {allowed, slack_us, reset_us} per hit, flat; a key lives only while its bucket is not
# full. One call, one clock reading: every hit of a batch happens at the same `now`.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local wait = tat + interval - now
  if wait > capacity then
    out[#out + 1] = 0
    out[#out + 1] = wait - capacity
    out[#out + 1] = tat - now
  else
    redis.call('SET', KEYS[i], now + wait, 'PX', math.ceil(wait / 1000) + 1)
    out[#out + 1] = 1
    out[#out + 1] = capacity - wait
    out[#out + 1] = wait
  end
end
return out
"""

MAX_BATCH = 256


class RedisLimiter:
    """One bucket per tenant in Redis, shared by every ingress process that uses this Redis.

    Hits are batched (ingest.coalesce): while one script call is in flight, the hits that
    arrive meanwhile wait and go together in the next call (up to MAX_BATCH), so under load
    many requests share one round trip and its client-side cost; a lone request still goes at
    once.

    Redis unreachable: this process's own buckets decide meanwhile (a warning is logged at most
    once a minute), so an outage of Redis loosens the limit instead of refusing every shop.
    """

    backend = "redis"

    def __init__(self, redis: Redis, prefix: str = "kopilka:ratelimit:") -> None:
        self._script = redis.register_script(_GCRA)
        self._prefix = prefix
        self._fallback = LocalLimiter()
        self._warned_at = -math.inf
        self._hits: Coalescer[tuple[str, Quota], Decision] = Coalescer(self._send, MAX_BATCH)

    async def hit(self, tenant_id: str, quota: Quota) -> Decision:
        return await self._hits.submit((tenant_id, quota))

    async def _send(self, batch: list[tuple[str, Quota]]) -> list[Decision]:
        keys, args = [], []
        for tenant_id, quota in batch:
            keys.append(self._prefix + tenant_id)
            args += (quota.interval_us, quota.capacity_us)
        try:
            flat = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("rate_limit_redis_unavailable", error=type(exc).__name__)
            return [await self._fallback.hit(tenant_id, quota) for tenant_id, quota in batch]
        return [
            _decide(quota, int(flat[3 * i]), int(flat[3 * i + 1]), int(flat[3 * i + 2]))
            for i, (_, quota) in enumerate(batch)
        ]
