"""Cached tenant look-ups for the hot paths (the ingress, the normaliser), and what they do
while the database cannot answer."""

from __future__ import annotations

import asyncio
import math
import time

import asyncpg

from kopilka.core.cache import TTLCache
from kopilka.core.db import DATABASE_DOWN
from kopilka.core.logging import get_logger
from kopilka.directory.credentials import digest
from kopilka.directory.tenant_rows import (
    Tenant,
    tenant_by_api_key,
    tenant_by_id,
    tenant_by_secret,
)

log = get_logger(__name__)


class DirectoryUnavailable(ConnectionError):
    """The database could not answer and nothing is cached for this key: retry later.

    A ConnectionError, so every retry policy that knows connection loss retries it."""


class TenantDirectory:
    """Cached tenant look-ups for the hot paths; a change is seen within `ttl_s` seconds.

    Known tenants and unknown credentials are kept apart, so a flood of guessed secrets cannot
    push real shops out: known tenants in one bounded LRU, kept for `stale_s` and served *stale*
    when the database cannot answer (a known shop needs only Kafka to be accepted); unknown keys
    in their own small LRU for `negative_ttl_s` (short: a new shop is found within it).

    After a failed query the database is not asked again for `backoff_s`: meanwhile known
    tenants are served from cache at once and unknown keys raise DirectoryUnavailable.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        ttl_s: float = 5.0,
        maxsize: int = 10_000,
        *,
        stale_s: float = 24 * 3600.0,
        negative_ttl_s: float = 2.0,
        negative_maxsize: int = 10_000,
        timeout_s: float | None = None,
        backoff_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self.ttl_s, self.timeout_s, self.backoff_s = ttl_s, timeout_s, backoff_s
        # key -> (monotonic time it was loaded, tenant)
        self._known: TTLCache[tuple, tuple[float, Tenant]] = TTLCache(maxsize, max(stale_s, ttl_s))
        self._unknown: TTLCache[tuple, bool] = TTLCache(negative_maxsize, negative_ttl_s)
        self._down_until = -math.inf
        self._loading: dict[tuple, asyncio.Future] = {}
        self.stale_served = 0

    def knows(self, key: tuple) -> bool:
        """Whether `key` names a tenant seen recently (fresh or stale): no query is needed to
        answer it while the database is down."""
        return self._known.get(key) is not None

    async def _cached(self, key: tuple, load) -> Tenant | None:
        entry = self._known.get(key)
        now = time.monotonic()
        if entry is not None and now - entry[0] < self.ttl_s:
            return entry[1]
        if entry is None and self._unknown.get(key):
            return None
        if now < self._down_until:
            return self._stale(key, entry, "recently_down")
        # one query per key at a time: the requests that find it expired meanwhile share it
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key, entry, load))
            self._loading[key] = loading
            loading.add_done_callback(lambda _done: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _load(self, key: tuple, entry: tuple[float, Tenant] | None, load) -> Tenant | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                tenant = await load()
        except DATABASE_DOWN as exc:
            self._down_until = time.monotonic() + self.backoff_s
            return self._stale(key, entry, type(exc).__name__)
        if tenant is None:
            self._known.pop(key)
            self._unknown.set(key, True)
        else:
            self._unknown.pop(key)
            self._known.set(key, (time.monotonic(), tenant))
        return tenant

    def _stale(self, key: tuple, entry: tuple[float, Tenant] | None, why: str) -> Tenant:
        if entry is None:
            raise DirectoryUnavailable(why)
        self.stale_served += 1
        if self.stale_served == 1 or self.stale_served % 1000 == 0:
            log.warning(
                "tenant_served_stale",
                tenant_id=entry[1].id,
                age_s=round(time.monotonic() - entry[0], 1),
                error=why,
                stale_served=self.stale_served,
            )
        return entry[1]

    @staticmethod
    def secret_key(secret: str) -> tuple:
        return ("secret", digest(secret))

    async def by_secret(self, secret: str) -> Tenant | None:
        return await self._cached(
            self.secret_key(secret), lambda: tenant_by_secret(self.pool, secret)
        )

    async def by_api_key(self, key: str) -> Tenant | None:
        return await self._cached(
            ("api_key", digest(key)), lambda: tenant_by_api_key(self.pool, key)
        )

    async def by_id(self, tenant_id: str) -> Tenant | None:
        return await self._cached(("id", tenant_id), lambda: tenant_by_id(self.pool, tenant_id))
