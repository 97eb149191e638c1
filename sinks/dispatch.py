"""`kopilka dispatch`: the process that sends what the pipeline decided to tell the world.

It runs the webhook dispatcher (sinks.webhook_delivery) and the Telegram notifier
(sinks.telegram_notifier) side by side, woken by Postgres NOTIFY when new work is written and
polling as a fallback, and prunes what is past its retention (kopilka.directory.retention) every
`retention_interval_s`. It holds no state of its own: stop it, kill it, run several; the outboxes
in Postgres are the state.
"""

from __future__ import annotations

import asyncio
import signal

import asyncpg

from kopilka.core import db
from kopilka.core.db import DATABASE_DOWN
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings
from kopilka.directory import retention
from kopilka.directory.subscriptions import WAKE_CHANNEL
from sinks import dispatch_metrics
from sinks.telegram_notifier import TELEGRAM_WAKE, TelegramSender, make_bot
from sinks.telegram_outbox import TelegramOutbox
from sinks.webhook_delivery import WebhookDispatcher

log = get_logger(__name__)


async def _listen(dsn: str, callbacks: dict[str, object], stopping: asyncio.Event) -> None:
    """LISTEN on the wake-up channels, reconnecting whenever the connection drops."""
    while not stopping.is_set():
        try:
            conn = await asyncpg.connect(dsn)
        except DATABASE_DOWN:
            await asyncio.sleep(1.0)
            continue
        try:
            for channel, callback in callbacks.items():
                await conn.add_listener(channel, callback)
            for callback in callbacks.values():
                callback()  # anything written while we were not listening
            while not stopping.is_set() and not conn.is_closed():
                await asyncio.sleep(1.0)
                await conn.execute("SELECT 1")
        except DATABASE_DOWN:
            pass
        finally:
            if not conn.is_closed():
                await conn.close()


async def serve(settings: Settings, stopping: asyncio.Event) -> None:
    dsn = settings.database_url.get_secret_value()
    await db.wait_for_database(dsn, timeout_s=120)
    pool = await db.create_pool(dsn, min_size=1, max_size=10)
    webhooks = WebhookDispatcher(pool, settings)
    ingest = TelegramOutbox(pool, settings)
    bot = make_bot(settings)
    sender = TelegramSender(pool, settings, bot) if bot else None
    if sender is None:
        log.warning("telegram_off", reason="KOPILKA_TELEGRAM_BOT_TOKEN is not set; messages wait")
    callbacks = {WAKE_CHANNEL: webhooks.on_notify}
    if sender:
        callbacks[TELEGRAM_WAKE] = sender.on_notify
    loops = [
        webhooks.run(stopping),
        ingest.run(stopping),
        _listen(dsn, callbacks, stopping),
        retention.run_periodically(pool, settings, stopping),
        dispatch_metrics.run_sampler(pool, settings, stopping),
        *([sender.run(stopping)] if sender else []),
    ]
    metrics = dispatch_metrics.serve(settings)
    log.info("dispatch_ready", telegram=sender is not None, metrics=metrics)
    try:
        await asyncio.gather(*loops)
    finally:
        await pool.close()
        log.info("dispatch_stopped")


def run(settings: Settings) -> None:
    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await serve(settings, stopping)

    asyncio.run(main())
