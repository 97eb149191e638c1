"""Where a refund goes: the raw key its order's purchase or spend went with, kept at the edge.

A refund names only its order. Keyed like its customer's requests (schemas.routing), it travels
behind them on one partition of `webhooks.raw`, and nothing the shop sent before it can be
overtaken. The order's owner in Postgres (`order_claims`) is known only once a worker has
normalised the purchase, so with a backlog the ingress could not tell, keyed the refund by its
order, and the refund could overtake what the customer sent after that purchase (the kill -9
fault scenario: a refund of a purchase applied after the refund of the spend sent after it).

So when the ingress accepts a purchase or a spend, it remembers the raw key the request went
with for each order it names (the first one wins, kept for the refund window), before it
answers 202: a refund sent after that 202 finds it. Redis when configured (every ingress process
shares it), this process's memory else. On a miss (Redis away, another process without Redis)
the refund falls back to the order's owner in Postgres, then to its order's own key, and the
worker holds it until the backlog before it is normalised (streams.raw_progress).
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ingest.coalesce import Coalescer
from kopilka.core.cache import TTLCache
from kopilka.core.logging import get_logger
from schemas.inbound import ParsedWebhook

log = get_logger(__name__)


class OrderRoutes(Protocol):
    backend: str

    async def remember(self, tenant_id: str, parsed: ParsedWebhook, key: bytes) -> None:
        """Keep `key` for every order the request claims, unless one is kept already."""

    async def route(self, tenant_id: str, order_id: str) -> bytes | None:
        """The raw key the order's claiming request went with, if known here."""


def claimed_orders(parsed: ParsedWebhook) -> list[str]:
    orders = [p.order_id for p in parsed.purchases]
    if (claimed := parsed.claimed_order()) is not None:
        orders.append(claimed)
    return orders


def _name(tenant_id: str, order_id: str) -> str:
    return f"{tenant_id}:{order_id}"


class LocalOrderRoutes:
    backend = "in-process"

    def __init__(self, keep_s: float, maxsize: int = 200_000) -> None:  # ~40 MB at most
        self._routes: TTLCache[str, bytes] = TTLCache(maxsize, keep_s)

    async def remember(self, tenant_id: str, parsed: ParsedWebhook, key: bytes) -> None:
        for order_id in claimed_orders(parsed):
            name = _name(tenant_id, order_id)
            if self._routes.get(name) is None:
                self._routes.set(name, key)

    async def route(self, tenant_id: str, order_id: str) -> bytes | None:
        return self._routes.get(_name(tenant_id, order_id))


# KEYS: one per order named in the batch; ARGV: the seconds to keep them, then each key's value.
# SET NX in order: within a batch, as across batches, the first request to name an order wins.
_REMEMBER = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1], 'NX')
end
return #KEYS
"""


class RedisOrderRoutes:
    """Routes in Redis, shared by every ingress process. The requests that remember at the same
    time share one script call (ingest.coalesce): a round trip per request was the largest
    single cost in the ingress's profile."""

    backend = "redis"

    def __init__(self, redis: Redis, keep_s: float, prefix: str = "kopilka:route:") -> None:
        self._redis, self._keep_s, self._prefix = redis, max(1, int(keep_s)), prefix
        self._script = redis.register_script(_REMEMBER)
        self._batches: Coalescer[list[tuple[str, bytes]], None] = Coalescer(self._remember)

    async def remember(self, tenant_id: str, parsed: ParsedWebhook, key: bytes) -> None:
        orders = claimed_orders(parsed)
        if orders:
            await self._batches.submit([(self._prefix + _name(tenant_id, o), key) for o in orders])

    async def _remember(self, batch: list[list[tuple[str, bytes]]]) -> list[None]:
        names = [name for routes in batch for name, _ in routes]
        keys = [key for routes in batch for _, key in routes]
        try:
            await self._script(keys=names, args=[self._keep_s, *keys])
        except (RedisError, OSError, TimeoutError) as exc:  # a refund then falls back to the owner
            log.warning("order_routes_unavailable", op="remember", error=type(exc).__name__)
        return [None] * len(batch)

    async def route(self, tenant_id: str, order_id: str) -> bytes | None:
        try:
            return await self._redis.get(self._prefix + _name(tenant_id, order_id))
        except (RedisError, OSError) as exc:
            log.warning("order_routes_unavailable", op="route", error=type(exc).__name__)
            return None
