"""Where ingress processes share state: Redis when `REDIS_URL` is set, this process's memory else.

Rate-limit buckets (tenants', and client IPs' failed attempts), the webhook-id replay guard and
the orders' routes (ingest.order_routes) live here. Which one is in use is logged once
at start (`edge_state backend=redis|in-process`), so an operator who forgot `REDIS_URL` on a
multi-replica deployment sees that every replica now enforces its own limit.
"""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from ingest.attempts import FailedAttempts
from ingest.context import (
    ADMIN_FAILURES,
    LIMITER,
    ORDER_ROUTES,
    REPLAY,
    SETTINGS,
    UNKNOWN_SECRETS,
)
from ingest.order_routes import LocalOrderRoutes, RedisOrderRoutes
from ingest.ratelimit import LocalLimiter, Quota, RedisLimiter
from ingest.replay import LocalReplayGuard, RedisReplayGuard
from kopilka.core.logging import get_logger

log = get_logger(__name__)


async def edge_state(app: web.Application):
    """cleanup_ctx: open Redis (when configured) for the limiter and the replay guard."""
    settings = app[SETTINGS]
    window_s = 2 * settings.signature_tolerance_s
    routes_s = settings.order_refund_window_days * 86400
    redis: Redis | None = None
    if settings.redis_url is not None and settings.redis_url.get_secret_value().strip():
        redis = Redis.from_url(
            settings.redis_url.get_secret_value(),
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            health_check_interval=30,
        )
        app[LIMITER] = RedisLimiter(redis)
        app[REPLAY] = RedisReplayGuard(redis, window_s)
        app[ORDER_ROUTES] = RedisOrderRoutes(redis, routes_s)
        log.info("edge_state", backend="redis", shared_across_processes=True)
    else:
        app[LIMITER] = LocalLimiter()
        app[REPLAY] = LocalReplayGuard(window_s)
        app[ORDER_ROUTES] = LocalOrderRoutes(routes_s)
        log.warning(
            "edge_state",
            backend="in-process",
            shared_across_processes=False,
            note="REDIS_URL is not set: rate limits, webhook-id replays and order routes are"
            " per process",
        )
    per_ip = settings.unknown_secrets_per_minute
    app[UNKNOWN_SECRETS] = FailedAttempts(app[LIMITER], "unknown-secret", Quota(per_ip, per_ip))
    admin = settings.admin_failures_per_minute
    app[ADMIN_FAILURES] = FailedAttempts(app[LIMITER], "admin-token", Quota(admin, admin))
    yield
    if redis is not None:
        await redis.aclose()
