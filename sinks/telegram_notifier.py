"""Telegram notifications: `notifications.telegram` -> a Postgres outbox -> the Bot API (aiogram).

Two loops in the `kopilka dispatch` process: `TelegramOutbox` (sinks.telegram_outbox) fills
the outbox, and here

* `TelegramSender` sends the outbox through aiogram, oldest first per chat, at most
  `telegram_bot_rate` messages a second for the bot and one per `telegram_chat_interval_s` per
  chat. `RetryAfter` (429) pauses that chat for `retry_after` and retries; `Forbidden` (403: the
  bot was blocked or removed) stops the chat, marks it blocked and records its pending messages as
  `forbidden`; network and server errors are retried with backoff (at most a minute apart) for
  `telegram_give_up_after_s`, so an hour-long Telegram outage loses nothing. One sender is active
  at a time (a Postgres advisory lock), so the per-bot limit holds with several dispatchers.

Fencing: the advisory lock lives as long as the session that took it, so the sender claims each
message on that very connection (status pending, due, stamped with a fresh `lease_token`, leased
for `telegram_lease_s`) before sending it. When the lock connection is gone (Postgres restarted,
the backend terminated), the claim fails, the sender stops and goes back to waiting for the lock,
and whoever holds it now never sees a message claimed before as due until its lease ran out.
Outcomes are written only while the token is still the message's (`telegram_lease_lost` else).

No message twice: Telegram has no idempotency key, so a message whose lease ran out with no
outcome written (the sender was killed, or lost the database, mid-send) may well have been
posted. It is never sent again: the lock holder marks it `failed` ("outcome unknown ...",
`telegram_outcome_unknown` in the log) and the chat goes on with its next message. The token is
kept, so a sender that was only slow can still write what really happened. The claim is taken
just before the request, so what a crash cuts off is at most the sends in flight at that moment.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)

from kopilka.core.db import DATABASE_DOWN
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings
from schemas.telegram_text import render
from sinks.dispatch_metrics import TELEGRAM_429, TELEGRAM_SENDS
from sinks.pacing import ChatPacer, TokenBucket

log = get_logger(__name__)

TELEGRAM_WAKE = "kopilka_telegram"  # NOTIFY channel: new messages in the outbox
_SENDER_LOCK = 0x6B6F70746731  # one active sender: the per-bot rate limit is global
MAX_BACKOFF_S = 60.0
# last_error of a message whose send a crash cut off: it may have been posted, so it is not sent
# again (no message twice); the dispatcher fault scenario counts these
UNKNOWN_OUTCOME = "outcome unknown"
_LOCK_ERRORS = DATABASE_DOWN
# Is the sender lock still held by this session? (a bigint key shows as classid:objid)
_HOLDS = """
SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                  AND pid = pg_backend_pid() AND objsubid = 1
                  AND (classid::bigint << 32 | objid::bigint) = $1)
"""
_CLAIM = """
UPDATE telegram_messages SET lease_token = $2, next_attempt_at = now() + make_interval(secs => $3)
 WHERE id = $1 AND status = 'pending' AND next_attempt_at <= now() AND lease_token IS NULL
RETURNING lease_token
"""
# Claimed, never answered for, lease over: perhaps posted, so never sent again (see above).
_CUT_OFF = """
UPDATE telegram_messages SET status = 'failed', attempts = attempts + 1, last_error = $1
 WHERE status = 'pending' AND lease_token IS NOT NULL AND next_attempt_at <= now()
RETURNING id, tenant_id, chat_id
"""


class LockLost(Exception):
    """The sender's advisory-lock session is gone: another sender may be active now."""


async def enqueue_notice(conn: asyncpg.Connection, tenant_id: uuid.UUID, notice: dict) -> int:
    """Queue a message about the tenant's account (not a loyalty event) to all its live chats."""
    override = await conn.fetchval(
        "SELECT template FROM telegram_templates WHERE tenant_id = $1 AND event_type = $2",
        tenant_id,
        notice["type"],
    )
    text = render(notice, override)
    result = await conn.execute(
        "INSERT INTO telegram_messages (id, tenant_id, chat_id, event_type, text)"
        " SELECT gen_random_uuid(), tenant_id, chat_id, $2, $3 FROM telegram_chats"
        " WHERE tenant_id = $1 AND enabled AND blocked_at IS NULL",
        tenant_id,
        notice["type"],
        text,
    )
    await conn.execute(f"NOTIFY {TELEGRAM_WAKE}")
    return int(result.split()[-1])


def make_bot(settings: Settings) -> Bot | None:
    if settings.telegram_bot_token is None:
        return None
    session = AiohttpSession(
        api=TelegramAPIServer.from_base(settings.telegram_api_url.rstrip("/")), timeout=15
    )
    return Bot(settings.telegram_bot_token.get_secret_value(), session=session)


class TelegramSender:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, bot: Bot) -> None:
        self.pool, self.settings, self.bot = pool, settings, bot
        self.bucket = TokenBucket(settings.telegram_bot_rate)
        self.pacer = ChatPacer(settings.telegram_chat_interval_s)
        self.in_flight: set[int] = set()
        self.wake = asyncio.Event()

    def on_notify(self, *_args) -> None:
        self.wake.set()

    async def _lock(self, stopping: asyncio.Event) -> asyncpg.Connection | None:
        while not stopping.is_set():
            try:
                conn = await asyncpg.connect(self.settings.database_url.get_secret_value())
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _SENDER_LOCK):
                    return conn
                await conn.close()
            except _LOCK_ERRORS as exc:
                log.warning("telegram_lock_failed", error=type(exc).__name__)
            await asyncio.sleep(2.0)
        return None

    async def holds(self, lock: asyncpg.Connection) -> bool:
        # Any failure on this session counts as the lock lost: e.g. after a stall, a timed-out
        # call leaves asyncpg's protocol mid-operation (InternalClientError, not PostgresError).
        try:
            return bool(await asyncio.wait_for(lock.fetchval(_HOLDS, _SENDER_LOCK), 10))
        except Exception:
            return False

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            while not stopping.is_set():
                lock = await self._lock(stopping)
                if lock is None:
                    return
                log.info("telegram_sender_active")
                try:
                    await self._lead(lock, stopping)
                finally:
                    try:
                        await asyncio.wait_for(lock.close(), 5)
                    except Exception:  # a broken session: just drop it
                        lock.terminate()
        finally:
            await self.bot.session.close()

    async def _lead(self, lock: asyncpg.Connection, stopping: asyncio.Event) -> None:
        """Send while the lock is ours; return when stopping or when it was lost."""
        tasks: set[asyncio.Task] = set()
        try:
            while not stopping.is_set():
                if not await self.holds(lock):
                    log.warning("telegram_lock_lost")
                    return
                timeout = self.settings.dispatch_poll_interval_s
                try:
                    timeout = min(timeout, await self.send_due(tasks, lock))
                except LockLost:
                    log.warning("telegram_lock_lost")
                    return
                except _LOCK_ERRORS as exc:
                    log.warning("telegram_poll_failed", error=type(exc).__name__)
                self.wake.clear()
                waiter = asyncio.ensure_future(self.wake.wait())
                stopper = asyncio.ensure_future(stopping.wait())
                await asyncio.wait(
                    {waiter, stopper}, timeout=max(timeout, 0.01), return_when="FIRST_COMPLETED"
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            if tasks:  # what is in flight was claimed under the lock: let it finish and record
                await asyncio.wait(tasks, timeout=20)

    async def claim(self, lock: asyncpg.Connection, message_id: uuid.UUID) -> uuid.UUID | None:
        """Lease one message on the lock's own session: no lock, no claim (LockLost)."""
        try:
            return await asyncio.wait_for(
                lock.fetchval(_CLAIM, message_id, uuid.uuid4(), self.settings.telegram_lease_s),
                10,
            )
        except Exception as exc:  # see holds()
            raise LockLost from exc

    async def cut_off(self, lock: asyncpg.Connection) -> int:
        """Close the messages whose send a crash cut off (see the module's docstring), on the
        lock's own session: only the active sender decides. Returns how many."""
        reason = f"{UNKNOWN_OUTCOME}: the send was cut off; not sent again (it may have been)"
        try:
            rows = await asyncio.wait_for(lock.fetch(_CUT_OFF, reason), 10)
        except Exception as exc:  # see holds()
            raise LockLost from exc
        for row in rows:
            log.warning(
                "telegram_outcome_unknown",
                message_id=str(row["id"]),
                tenant_id=str(row["tenant_id"]),
                chat_id=row["chat_id"],
            )
        return len(rows)

    async def send_due(self, tasks: set[asyncio.Task], lock: asyncpg.Connection) -> float:
        """Start sending what may go now; return the seconds until more may go."""
        await self.cut_off(lock)
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (chat_id) id, tenant_id, chat_id, text, attempts,"
            " next_attempt_at, created_at FROM telegram_messages WHERE status = 'pending'"
            " ORDER BY chat_id, seq LIMIT 5000"
        )
        now = datetime.now(UTC)
        soonest = float("inf")
        self.pacer.forget_idle()
        for row in rows:
            chat = row["chat_id"]
            if chat in self.in_flight:
                continue
            wait = max(self.pacer.wait_time(chat), (row["next_attempt_at"] - now).total_seconds())
            if wait > 0:
                soonest = min(soonest, wait)
                continue
            await self.bucket.take()
            token = await self.claim(lock, row["id"])
            if token is None:  # sent, blocked or retried meanwhile: look again next time
                continue
            self.in_flight.add(chat)
            self.pacer.sent(chat)
            task = asyncio.create_task(self.send(row, token))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return soonest

    async def send(self, row: asyncpg.Record, token: uuid.UUID) -> None:
        chat = row["chat_id"]
        started = time.perf_counter()
        try:
            try:
                await self.bot.send_message(chat, row["text"])
            except TelegramRetryAfter as exc:
                TELEGRAM_SENDS.labels("retry_after").inc()
                TELEGRAM_429.inc()
                self.pacer.pause(chat, exc.retry_after)
                after = exc.retry_after
                await self._retry(row, token, after, f"429 retry after {after}s")
            except TelegramForbiddenError as exc:
                TELEGRAM_SENDS.labels("forbidden").inc()
                await self._forbidden(row, token, exc.message)
            except TelegramUnauthorizedError as exc:  # our token: keep the message, alert
                TELEGRAM_SENDS.labels("unauthorized").inc()
                log.error("telegram_unauthorized", detail=exc.message)
                await self._retry(row, token, MAX_BACKOFF_S, f"unauthorized: {exc.message}")
            except TelegramBadRequest as exc:
                TELEGRAM_SENDS.labels("bad_request").inc()
                await self._final(row, token, "failed", f"bad request: {exc.message}")
            except (
                TelegramNetworkError,
                TelegramServerError,
                TelegramAPIError,
                TimeoutError,
                OSError,
            ) as exc:
                TELEGRAM_SENDS.labels("error").inc()
                backoff = min(2.0 ** row["attempts"], MAX_BACKOFF_S)
                await self._retry(row, token, backoff, f"{type(exc).__name__}: {exc}"[:500])
            else:
                TELEGRAM_SENDS.labels("sent").inc()
                await self._final(row, token, "sent", None)
                log.info(
                    "telegram_sent",
                    chat_id=chat,
                    tenant_id=str(row["tenant_id"]),
                    latency_ms=round((time.perf_counter() - started) * 1000, 1),
                )
        except DATABASE_DOWN as exc:
            # the outcome was not recorded: the message stays pending and goes again later
            log.warning("telegram_record_failed", error=type(exc).__name__)
        finally:
            self.in_flight.discard(chat)
            self.wake.set()

    @staticmethod
    def _fenced(result: str, row) -> None:
        if result == "UPDATE 0":
            log.warning("telegram_lease_lost", message_id=str(row["id"]), chat_id=row["chat_id"])

    async def _retry(self, row, token: uuid.UUID, delay_s: float, error: str) -> None:
        give_up = row["created_at"] + timedelta(seconds=self.settings.telegram_give_up_after_s)
        if datetime.now(UTC) + timedelta(seconds=delay_s) > give_up:
            await self._final(row, token, "failed", f"gave up: {error}")
            return
        log.warning("telegram_retry", chat_id=row["chat_id"], delay_s=delay_s, error=error)
        result = await self.pool.execute(
            "UPDATE telegram_messages SET attempts = attempts + 1, last_error = $3,"
            " next_attempt_at = now() + make_interval(secs => $4), lease_token = NULL"
            " WHERE id = $1 AND lease_token = $2",
            row["id"],
            token,
            error,
            delay_s,
        )
        self._fenced(result, row)

    async def _final(self, row, token: uuid.UUID, status: str, error: str | None) -> None:
        result = await self.pool.execute(
            "UPDATE telegram_messages SET status = $3, attempts = attempts + 1, last_error = $4,"
            " sent_at = CASE WHEN $3 = 'sent' THEN now() END, lease_token = NULL"
            " WHERE id = $1 AND lease_token = $2",
            row["id"],
            token,
            status,
            error,
        )
        self._fenced(result, row)

    async def _forbidden(self, row, token: uuid.UUID, reason: str) -> None:
        log.warning("telegram_forbidden", chat_id=row["chat_id"], tenant_id=str(row["tenant_id"]))
        async with self.pool.acquire() as conn, conn.transaction():
            owned = await conn.execute(
                "UPDATE telegram_messages SET lease_token = NULL"
                " WHERE id = $1 AND lease_token = $2",
                row["id"],
                token,
            )
            if owned == "UPDATE 0":
                self._fenced(owned, row)
                return
            await conn.execute(
                "UPDATE telegram_chats SET blocked_at = now(), blocked_reason = $3"
                " WHERE tenant_id = $1 AND chat_id = $2",
                row["tenant_id"],
                row["chat_id"],
                reason,
            )
            await conn.execute(
                "UPDATE telegram_messages SET status = 'forbidden', last_error = $3,"
                " attempts = attempts + CASE WHEN id = $4 THEN 1 ELSE 0 END"
                " WHERE tenant_id = $1 AND chat_id = $2 AND status = 'pending'",
                row["tenant_id"],
                row["chat_id"],
                reason,
                row["id"],
            )
