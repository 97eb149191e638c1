"""The Telegram outbox: `notifications.telegram` -> rendered rows in `telegram_messages`.

`TelegramOutbox` (a loop in `kopilka dispatch`) consumes `notifications.telegram` (written by the
stream fan-out, one record per chat and event), renders the text with the tenant's template
(schemas.telegram_text) and stores it in `telegram_messages`, idempotent on the message id;
only then are the Kafka offsets committed. A record that cannot be rendered still becomes a
(generic) message. `sinks.telegram_notifier.TelegramSender` sends the outbox.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from kopilka.core import topics
from kopilka.core.cache import TTLCache
from kopilka.core.db import CONNECTION_LOST
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings
from schemas.telegram_text import render
from sinks.telegram_notifier import TELEGRAM_WAKE

log = get_logger(__name__)

_INSERT = """
INSERT INTO telegram_messages (id, tenant_id, chat_id, event_id, event_type, text)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[], $6::text[])
ON CONFLICT (id) DO NOTHING
"""
# A chat blocked after the fan-out looked (its cache is seconds old) gets nothing more.
_DROP_BLOCKED = """
UPDATE telegram_messages m SET status = 'forbidden', last_error = c.blocked_reason
  FROM telegram_chats c
 WHERE m.id = ANY($1::uuid[]) AND m.status = 'pending'
   AND c.tenant_id = m.tenant_id AND c.chat_id = m.chat_id AND c.blocked_at IS NOT NULL
"""


def _uuid_or_none(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


class TelegramOutbox:
    """notifications.telegram -> telegram_messages (rendered), then commit the offsets."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool, self.settings = pool, settings
        self._templates: TTLCache[str, dict[str, str]] = TTLCache(100_000, 5.0)

    async def templates(self, tenant_id: str) -> dict[str, str]:
        hit = self._templates.get(tenant_id)
        if hit is None:
            rows = await self.pool.fetch(
                "SELECT event_type, template FROM telegram_templates WHERE tenant_id = $1",
                uuid.UUID(tenant_id),
            )
            hit = {r["event_type"]: r["template"] for r in rows}
            self._templates.set(tenant_id, hit)
        return hit

    async def rows(self, values: list[bytes]) -> list[tuple]:
        out = []
        for value in values:
            try:
                rec = orjson.loads(value)
                event = rec["event"] if isinstance(rec.get("event"), dict) else {}
                tenant_id, chat_id = str(uuid.UUID(rec["tenant_id"])), int(rec["chat_id"])
                message_id = uuid.UUID(rec["message_id"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                log.error("telegram_unreadable_record", value=value[:200].decode(errors="replace"))
                continue
            kind = str(event.get("type", rec.get("event_type", "unknown")))
            text = render(event, (await self.templates(tenant_id)).get(kind))
            out.append(
                (
                    message_id,
                    uuid.UUID(tenant_id),
                    chat_id,
                    _uuid_or_none(event.get("event_id")),
                    kind,
                    text,
                )
            )
        return out

    async def run(self, stopping: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            topics.NOTIFICATIONS_TELEGRAM.name,
            bootstrap_servers=self.settings.bootstrap_list,
            group_id=f"{self.settings.worker_id}-telegram",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        while not stopping.is_set():
            try:
                await consumer.start()
                break
            except KafkaError as exc:
                log.warning("telegram_consumer_start_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)
        try:
            while not stopping.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                values = [r.value for records in batches.values() for r in records]
                if not values:
                    continue
                while True:  # the outbox must have them before the offsets move on
                    try:
                        rows = await self.rows(values)
                        if rows:
                            async with self.pool.acquire() as conn, conn.transaction():
                                await conn.execute(_INSERT, *zip(*rows, strict=True))
                                await conn.execute(_DROP_BLOCKED, [r[0] for r in rows])
                                await conn.execute(f"NOTIFY {TELEGRAM_WAKE}")
                        break
                    except CONNECTION_LOST:
                        log.warning("telegram_outbox_write_failed")
                        await asyncio.sleep(1.0)
                await consumer.commit()
        finally:
            await consumer.stop()
