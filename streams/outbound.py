"""Agent `outbound_fanout`: loyalty.events -> webhook deliveries and Telegram notifications.

For each event, the tenant's live subscriptions decide where it goes: a row in
`webhook_deliveries` per endpoint that wants its type (idempotent on (endpoint, event)), and a
record on `notifications.telegram` per chat that opted into it. Nothing here talks to a shop or
to Telegram: `kopilka dispatch` does, from those outboxes, so a slow or dead endpoint never slows
the stream. Events are handled as plain dicts with a `type`: a type the engine adds later flows
through with no change here. Offsets are acknowledged only after the rows are written and the
records acknowledged by Kafka, so a crash re-fans-out, which the ids make harmless.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson

from kopilka import topics
from kopilka.ids import derived_id
from kopilka.logging import get_logger
from sinks.subscriptions import WAKE_CHANNEL, SubscriptionDirectory, wants
from streams.app import app, events, raw_topic, resources, settings
from streams.retry import until_done

log = get_logger(__name__)

notifications_telegram = raw_topic(topics.NOTIFICATIONS_TELEGRAM)

_INSERT = """
INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type, payload)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[])
ON CONFLICT (endpoint_id, event_id) DO NOTHING
"""


def read_event(raw: bytes) -> dict | None:
    try:
        event = orjson.loads(raw)
        uuid.UUID(str(event["event_id"]))
        uuid.UUID(str(event["tenant_id"]))
        str(event["type"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.error("outbound_unreadable_event", value=raw[:200].decode(errors="replace"))
        return None
    return event if isinstance(event, dict) else None


class Fanout:
    def __init__(self) -> None:
        self._subs: SubscriptionDirectory | None = None

    async def subscriptions(self) -> SubscriptionDirectory:
        if self._subs is None:
            self._subs = SubscriptionDirectory(
                await until_done(resources.pool, "connect"), ttl_s=settings.tenant_cache_ttl_s
            )
        return self._subs

    async def plan(self, batch: list[bytes]) -> tuple[list[tuple], list[tuple[bytes, bytes]]]:
        """Delivery rows and Telegram records for a batch of raw events."""
        directory = await self.subscriptions()
        deliveries, messages = [], []
        for raw in batch:
            event = read_event(raw)
            if event is None:
                continue
            tenant_id, kind = str(event["tenant_id"]), str(event["type"])
            subs = await until_done(lambda t=tenant_id: directory.of(t), "subscriptions")
            event_id = uuid.UUID(str(event["event_id"]))
            payload = raw.decode()
            for endpoint_id, types in subs.endpoints:
                if wants(types, kind):
                    row_id = uuid.UUID(derived_id("webhook", endpoint_id, event_id))
                    deliveries.append(
                        (row_id, endpoint_id, uuid.UUID(tenant_id), event_id, kind, payload)
                    )
            for chat_id, types in subs.chats:
                if wants(types, kind):
                    record = {
                        "message_id": derived_id("telegram", tenant_id, chat_id, event_id),
                        "tenant_id": tenant_id,
                        "chat_id": chat_id,
                        "event_type": kind,
                        "event": event,
                    }
                    messages.append((str(chat_id).encode(), orjson.dumps(record)))
        return deliveries, messages

    async def write(self, deliveries: list[tuple]) -> None:
        pool = await until_done(resources.pool, "connect")

        async def insert() -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(_INSERT, *zip(*deliveries, strict=True))
                await conn.execute(f"NOTIFY {WAKE_CHANNEL}")

        await until_done(insert, "outbound.insert")

    async def handle(self, batch: list[bytes]) -> None:
        deliveries, messages = await self.plan(batch)
        if deliveries:
            await self.write(deliveries)
        if messages:
            sent = [
                await notifications_telegram.send(key=key, value=value) for key, value in messages
            ]
            await asyncio.gather(*sent)


@app.agent(events)
async def outbound_fanout(stream):
    fanout = Fanout()
    async for batch in stream.take(settings.sink_batch_size, within=settings.sink_batch_within_s):
        await fanout.handle(batch)
