"""Throttling of failed attempts per client IP: guessed webhook secrets, wrong admin tokens.

A failure costs one token of the client IP's bucket (the shared rate limiter: Redis when
configured, this process's memory else). An IP whose bucket is empty is told 429 with
`Retry-After` before anything is looked up, so a guesser costs no database query while blocked.
Successes cost nothing: a shop or an operator with the right credential is never slowed down.

The client IP is the peer address as aiohttp sees it (`request.remote`); behind a reverse proxy
that is the proxy's, so the proxy must do its own throttling or pass the real address through
aiohttp's forwarded-header handling.
"""

from __future__ import annotations

import math
import time

from aiohttp import web

from ingest.ratelimit import Limiter, Quota
from ingest.responses import error
from kopilka.core.cache import TTLCache
from kopilka.core.logging import get_logger

log = get_logger(__name__)


def client_ip(request: web.Request) -> str:
    return request.remote or "unknown"


class FailedAttempts:
    """Per-IP budget of failures in one `scope` ("unknown-secret", "admin-token")."""

    def __init__(self, limiter: Limiter, scope: str, quota: Quota, max_ips: int = 100_000) -> None:
        self._limiter, self.scope, self.quota = limiter, scope, quota
        # ip -> monotonic time until which it is refused (known here without asking Redis)
        self._blocked: TTLCache[str, float] = TTLCache(max_ips, math.ceil(quota.capacity_us / 1e6))

    def blocked(self, ip: str) -> int | None:
        """Seconds this IP must wait before its next attempt, or None when it may try."""
        until = self._blocked.get(ip)
        if until is None:
            return None
        left = math.ceil(until - time.monotonic())
        return left if left > 0 else None

    async def failed(self, ip: str) -> int | None:
        """Count one failure; the seconds to wait when the budget is now spent, else None."""
        decision = await self._limiter.hit(f"{self.scope}:{ip}", self.quota)
        if decision.allowed:
            return None
        self._blocked.set(ip, time.monotonic() + decision.retry_after_s)
        log.warning("failed_attempts_throttled", scope=self.scope, client_ip=ip)
        return decision.retry_after_s


def too_many(retry_after_s: int, what: str) -> web.Response:
    return error(
        429,
        "too_many_failures",
        f"too many {what} from this address; retry in {retry_after_s} s",
        headers={"Retry-After": str(retry_after_s)},
    )
