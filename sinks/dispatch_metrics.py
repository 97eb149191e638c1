"""Prometheus metrics of `kopilka dispatch`: outbound webhooks and Telegram notifications.

Counted where they happen (sinks.webhook_delivery, sinks.telegram_notifier): delivery attempts by
outcome and their latency, endpoints disabled, Telegram sends by outcome and its 429s. Sampled
from Postgres every `metrics_sample_interval_s` (`sample_outboxes`): the outbox depths, the age
of the oldest due delivery, and how many endpoints stand disabled. Labels are outcomes and
statuses only, never tenants or endpoints. Served on `settings.dispatch_metrics_port`.
"""

from __future__ import annotations

import asyncio

import asyncpg
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from kopilka.core.db import DATABASE_DOWN
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings

log = get_logger(__name__)

DELIVERY_ATTEMPTS = Counter(
    "kopilka_webhook_delivery_attempts_total",
    "Outbound webhook attempts by outcome (succeeded, failed, timeout, network, gone, refused)",
    ["outcome"],
)
DELIVERY_SECONDS = Histogram(
    "kopilka_webhook_delivery_seconds",
    "Outbound webhook attempt latency, by outcome",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
ENDPOINTS_DISABLED = Counter(
    "kopilka_webhook_endpoints_disabled_total", "Endpoints this dispatcher disabled"
)
TELEGRAM_SENDS = Counter(
    "kopilka_telegram_sends_total",
    "Telegram sendMessage calls by outcome (sent, retry_after, forbidden, unauthorized,"
    " bad_request, error)",
    ["outcome"],
)
TELEGRAM_429 = Counter("kopilka_telegram_429_total", "Telegram answers 429 Too Many Requests")
OUTBOX = Gauge("kopilka_outbox_pending", "Rows waiting in an outbox (sampled)", ["outbox"])
OUTBOX_DUE_AGE = Gauge(
    "kopilka_outbox_oldest_due_seconds",
    "How long the oldest due row of an outbox has been due (0: none is late)",
    ["outbox"],
)
DISABLED_NOW = Gauge(
    "kopilka_webhook_disabled_endpoints", "Endpoints disabled and not removed (sampled)"
)

_WEBHOOKS = """
SELECT count(*) AS pending,
       coalesce(extract(epoch FROM now() - min(next_attempt_at)
                FILTER (WHERE next_attempt_at <= now())), 0) AS late
FROM webhook_deliveries WHERE status = 'pending'
"""
_TELEGRAM = """
SELECT count(*) AS pending,
       coalesce(extract(epoch FROM now() - min(next_attempt_at)
                FILTER (WHERE next_attempt_at <= now())), 0) AS late
FROM telegram_messages WHERE status = 'pending'
"""
_DISABLED = (
    "SELECT count(*) FROM webhook_endpoints WHERE disabled_at IS NOT NULL AND removed_at IS NULL"
)


async def sample_outboxes(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for outbox, sql in (("webhooks", _WEBHOOKS), ("telegram", _TELEGRAM)):
            row = await conn.fetchrow(sql)
            OUTBOX.labels(outbox).set(row["pending"])
            OUTBOX_DUE_AGE.labels(outbox).set(float(row["late"]))
        DISABLED_NOW.set(await conn.fetchval(_DISABLED))


async def run_sampler(pool: asyncpg.Pool, settings: Settings, stopping: asyncio.Event) -> None:
    """Sample until `stopping`; a database that is away is tried again next time."""
    while not stopping.is_set():
        try:
            await sample_outboxes(pool)
        except DATABASE_DOWN as exc:
            log.warning("metrics_sample_failed", error=type(exc).__name__)
        try:
            await asyncio.wait_for(stopping.wait(), settings.metrics_sample_interval_s)
        except TimeoutError:
            pass


def serve(settings: Settings) -> bool:
    """Serve /metrics on `dispatch_metrics_port`; False when it is unset or 0."""
    port = settings.dispatch_metrics_port
    if not port:
        return False
    start_http_server(port, addr=settings.metrics_host)
    log.info("metrics_serving", port=port, host=settings.metrics_host)
    return True
