"""The `webhook-id` replay guard: a signed delivery id is accepted once within the window.

Standard Webhooks senders retry with the same `webhook-id`; an attacker who captured a signed
request can resend it within the timestamp tolerance. Either way the first delivery is stored
and answered 202; a repeat of the id (per tenant) within the window is answered 200 with the
first delivery's `event_id` and nothing is published again. With Redis the ids are shared by
every ingress process (SET NX with expiry); without it each process remembers its own.

A claim is `pending` until its delivery is stored (`confirm`): a repeat arriving meanwhile is
told to retry (409), not "duplicate", because the first may still fail and be released, and a
sender told "duplicate" would never send it again.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kopilka.core.cache import TTLCache
from kopilka.core.logging import get_logger

log = get_logger(__name__)


PENDING = "pending:"


class ReplayGuard(Protocol):
    backend: str

    async def claim(self, tenant_id: str, webhook_id: str, event_id: str) -> str | None:
        """None when the id is new (now claimed, pending); else the stored value: the first
        delivery's event id, or PENDING + it while that delivery is still being stored."""

    async def confirm(self, tenant_id: str, webhook_id: str, event_id: str) -> None:
        """The claimed delivery is stored: repeats are duplicates of `event_id` from now on."""

    async def release(self, tenant_id: str, webhook_id: str) -> None:
        """Forget a claim whose delivery was not stored, so that the sender's retry goes in."""


def _key(tenant_id: str, webhook_id: str) -> str:
    return f"{tenant_id}:{webhook_id}"


class LocalReplayGuard:
    backend = "in-process"

    def __init__(self, window_s: float, maxsize: int = 200_000) -> None:
        self._seen: TTLCache[str, str] = TTLCache(maxsize, window_s)

    async def claim(self, tenant_id: str, webhook_id: str, event_id: str) -> str | None:
        key = _key(tenant_id, webhook_id)
        first = self._seen.get(key)
        if first is not None:
            return first
        self._seen.set(key, PENDING + event_id)
        return None

    async def confirm(self, tenant_id: str, webhook_id: str, event_id: str) -> None:
        self._seen.set(_key(tenant_id, webhook_id), event_id)

    async def release(self, tenant_id: str, webhook_id: str) -> None:
        self._seen.set(_key(tenant_id, webhook_id), None)


class RedisReplayGuard:
    """Shared ids in Redis; unreachable Redis falls back to this process's memory."""

    backend = "redis"

    def __init__(self, redis: Redis, window_s: float, prefix: str = "kopilka:webhook-id:") -> None:
        self._redis, self._prefix = redis, prefix
        self._window_ms = math.ceil(window_s * 1000)
        self._fallback = LocalReplayGuard(window_s)
        self._warned_at = -math.inf

    async def claim(self, tenant_id: str, webhook_id: str, event_id: str) -> str | None:
        key = self._prefix + _key(tenant_id, webhook_id)
        try:
            first = await self._redis.set(
                key, PENDING + event_id, nx=True, px=self._window_ms, get=True
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._warn(exc)
            return await self._fallback.claim(tenant_id, webhook_id, event_id)
        return first.decode() if isinstance(first, bytes) else first

    async def confirm(self, tenant_id: str, webhook_id: str, event_id: str) -> None:
        key = self._prefix + _key(tenant_id, webhook_id)
        try:
            await self._redis.set(key, event_id, xx=True, keepttl=True)
        except (RedisError, OSError, TimeoutError) as exc:
            self._warn(exc)
        await self._fallback.confirm(tenant_id, webhook_id, event_id)

    async def release(self, tenant_id: str, webhook_id: str) -> None:
        try:
            await self._redis.delete(self._prefix + _key(tenant_id, webhook_id))
        except (RedisError, OSError, TimeoutError) as exc:
            self._warn(exc)
        await self._fallback.release(tenant_id, webhook_id)

    def _warn(self, exc: BaseException) -> None:
        if time.monotonic() - self._warned_at > 60:
            self._warned_at = time.monotonic()
            log.warning("replay_guard_redis_unavailable", error=type(exc).__name__)
