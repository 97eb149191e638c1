"""Agent `outbound_fanout`: loyalty.events -> webhook deliveries and Telegram notifications.

For each event, the tenant's live subscriptions decide where it goes: a row in
`webhook_deliveries` per endpoint that wants its type (idempotent on (endpoint, event)), and a
record on `notifications.telegram` per chat that opted into it. Nothing here talks to a shop or
to Telegram: `kopilka dispatch` does, from those outboxes, so a slow or dead endpoint never slows
the stream. Events are handled as plain dicts with a `type`: a type the engine adds later flows
through with no change here.

Errors: a transient one (the database or the broker away, timeouts, serialization failures,
too many clients, ...: `classify`) is retried with capped exponential backoff, for as long as
it lasts; an event that is bad by its data (unreadable, or refused by Postgres as data) goes to
`kopilka.dead-letters` whole, and the rest of its batch goes on. A batch is acknowledged only
once every event in it was written or dead-lettered: until then each of its messages holds one
more reference than Faust's `take_events` releases, so a crash or a shutdown mid-batch leaves
their offsets uncommitted and the batch comes again (which the derived ids make harmless).
Retrying does not hold up a rebalance: when one starts, the batch is abandoned unacknowledged
(`outbound_batch_abandoned`) and read again from the committed offset by whoever owns it next.
`register(stream_app)` puts the agent on an app (streams.app).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import asyncpg
import orjson
from aiokafka.errors import KafkaError, KafkaTimeoutError

from kopilka.core.db import CONNECTION_LOST
from kopilka.core.ids import derived_id
from kopilka.core.logging import get_logger
from kopilka.core.retry import is_transient
from kopilka.directory.subscriptions import WAKE_CHANNEL, SubscriptionDirectory, wants
from schemas.dead_letters import DeadLetter
from streams.acks import held
from streams.app import StreamApp

log = get_logger(__name__)
T = TypeVar("T")

_sa: StreamApp  # bound by `register`


def register(stream_app: StreamApp) -> None:
    global _sa
    _sa = stream_app
    stream_app.app.agent(stream_app.topics.events)(outbound_fanout)


_INSERT = """
INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type, payload)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[])
ON CONFLICT (endpoint_id, event_id) DO NOTHING
"""
MAX_BACKOFF_S = 5.0

# ------------------------------------------------------------------ the error taxonomy
# The transient SQLSTATEs are kopilka.core.retry's; this agent also tells data errors from unknown
# ones (an unknown one is retried, loudly).
_DATA_CLASSES = ("22", "23")  # data exception, integrity constraint violation

Kind = Literal["transient", "data", "unknown"]


def classify(exc: BaseException) -> Kind:
    """transient: retry it; data: the record itself is bad; unknown: retry it, loudly."""
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if is_transient(exc):
            return "transient"
        if state[:2] in _DATA_CLASSES:
            return "data"
        return "unknown"
    if isinstance(exc, KafkaError):
        if isinstance(exc, KafkaTimeoutError) or exc.retriable:
            return "transient"
        return "data"  # e.g. a record too large for the topic
    if isinstance(exc, CONNECTION_LOST):
        return "transient"
    if isinstance(exc, ValueError | TypeError | KeyError | UnicodeError):
        return "data"
    return "unknown"


class Abandoned(BaseException):  # like CancelledError: not an error
    """Stop retrying: a rebalance wants the partition; the batch stays unacknowledged."""


class BadRecord(Exception):
    """An event that cannot be fanned out because of what it holds."""

    def __init__(self, code: str, reason: str, error: BaseException | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.error = code, reason, error


def _never() -> bool:
    return False


async def retrying(
    step: Callable[[], Awaitable[T]], what: str, abandon: Callable[[], bool] = _never
) -> T:
    """Run `step` until it succeeds or fails because of the data (re-raised as is); between
    attempts, raise Abandoned when `abandon()` says so."""
    delay, attempt = 0.1, 0
    while True:
        try:
            return await step()
        except (asyncio.CancelledError, BadRecord):
            raise
        except Exception as exc:
            kind = classify(exc)
            if kind == "data":
                raise
            attempt += 1
            (log.warning if kind == "transient" else log.error)(
                "outbound_retrying",
                step=what,
                kind=kind,
                attempt=attempt,
                error=type(exc).__name__,
                detail=str(exc)[:200],
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
            if abandon():
                raise Abandoned(what) from exc


# the spelling every event id has: checked at C speed; any other goes through uuid.UUID
_HEX = "[0-9a-fA-F]"
_CANONICAL_UUID = re.compile(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}")


def _uuid_text(value: object) -> None:
    """Raise ValueError unless `value` reads as a UUID (as uuid.UUID(str(value)) would)."""
    text = str(value)
    if _CANONICAL_UUID.fullmatch(text) is None:
        uuid.UUID(text)


def read_event(raw: bytes) -> dict:
    try:
        event = orjson.loads(raw)
        if not isinstance(event, dict):
            raise TypeError("not a JSON object")
        _uuid_text(event["event_id"])
        _uuid_text(event["tenant_id"])
        str(event["type"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BadRecord("unreadable_event", "not a loyalty event with ids and a type", exc) from exc
    return event


@dataclass
class Planned:
    """What one source event turns into."""

    deliveries: list[tuple] = field(default_factory=list)
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """Where an event came from, for its dead letter."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Fanout:
    """The agent's work, with its outside world passed in (the agent wires the real one)."""

    def __init__(
        self,
        pool: Callable[[], Awaitable[asyncpg.Pool]],
        send_telegram: Callable[[bytes, bytes], Awaitable[None]],
        dead_letter: Callable[[DeadLetter], Awaitable[None]],
        abandon: Callable[[], bool] = _never,
        subscriptions_ttl_s: float = 5.0,
    ) -> None:
        self.pool, self.send_telegram, self.dead_letter = pool, send_telegram, dead_letter
        self.abandon, self.subscriptions_ttl_s = abandon, subscriptions_ttl_s
        self._subs: SubscriptionDirectory | None = None

    async def retrying(self, step: Callable[[], Awaitable[T]], what: str) -> T:
        return await retrying(step, what, self.abandon)

    async def subscriptions(self) -> SubscriptionDirectory:
        if self._subs is None:
            pool = await self.retrying(self.pool, "connect")
            self._subs = SubscriptionDirectory(pool, ttl_s=self.subscriptions_ttl_s)
        return self._subs

    async def plan(self, raw: bytes) -> Planned:
        event = read_event(raw)
        directory = await self.subscriptions()
        tenant_id, kind = str(event["tenant_id"]), str(event["type"])
        subs = await self.retrying(lambda: directory.of(tenant_id), "subscriptions")
        event_id = uuid.UUID(str(event["event_id"]))
        out = Planned()
        try:
            payload = raw.decode()
        except UnicodeDecodeError as exc:
            raise BadRecord("unreadable_event", "not UTF-8", exc) from exc
        for endpoint_id, types in subs.endpoints:
            if wants(types, kind):
                row_id = uuid.UUID(derived_id("webhook", endpoint_id, event_id))
                out.deliveries.append(
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
                out.messages.append((str(chat_id).encode(), orjson.dumps(record)))
        return out

    async def insert(self, deliveries: list[tuple]) -> None:
        pool = await self.retrying(self.pool, "connect")
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_INSERT, *zip(*deliveries, strict=True))
            await conn.execute(f"NOTIFY {WAKE_CHANNEL}")

    async def handle(self, batch: Sequence[Source]) -> None:
        """Fan out a batch; returns only when every event is written or dead-lettered."""
        planned: list[tuple[Source, Planned]] = []
        for src in batch:
            try:
                planned.append((src, await self.plan(src.value)))
            except BadRecord as exc:
                await self.reject(src, exc.code, exc.reason, exc.error)
            except Exception as exc:  # what the event's data made fail: keep it, redrivable
                await self.reject(src, "unplannable_event", "could not be fanned out", exc)
        rows = [row for _, p in planned for row in p.deliveries]
        if rows:
            try:
                await self.retrying(lambda: self.insert(rows), "outbound.insert")
            except Exception:  # a data error somewhere in the batch: find whose, one by one
                planned = [item for item in planned if await self._insert_alone(*item)]
        for src, p in planned:
            for key, value in p.messages:
                try:
                    await self.retrying(lambda k=key, v=value: self.send_telegram(k, v), "telegram")
                except Exception as exc:
                    await self.reject(src, "unsendable_notification", "refused by Kafka", exc)
                    break

    async def _insert_alone(self, src: Source, p: Planned) -> bool:
        if not p.deliveries:
            return True
        try:
            await self.retrying(lambda: self.insert(p.deliveries), "outbound.insert")
            return True
        except Exception as exc:
            await self.reject(src, "rejected_by_database", "Postgres refused its deliveries", exc)
            return False

    async def reject(self, src: Source, code: str, reason: str, error) -> None:
        tenant_id = None
        try:
            tenant_id = str(uuid.UUID(str(orjson.loads(src.value)["tenant_id"])))
        except Exception:  # noqa: S110 - unreadable: no tenant to name
            pass
        dl = DeadLetter.of(
            stage="outbound",
            source_topic=src.topic,
            partition=src.partition,
            offset=src.offset,
            key=src.key,
            value=src.value,
            code=code,
            reason=reason,
            error=error,
            tenant_id=tenant_id,
        )
        await self.retrying(lambda: self.dead_letter(dl), "dead_letter")


def _source(event) -> Source:
    msg = event.message
    value = event.value if isinstance(event.value, bytes) else msg.value
    return Source(msg.topic, msg.partition, msg.offset, msg.key, value)


async def _send_telegram(key: bytes, value: bytes) -> None:
    await (await _sa.topics.notifications_telegram.send(key=key, value=value))


async def _dead_letter(dl: DeadLetter) -> None:
    from streams import dead_letters

    await dead_letters.send(dl)


async def outbound_fanout(stream):
    app, settings = _sa.app, _sa.settings
    fanout = Fanout(
        _sa.resources.pool,
        _send_telegram,
        _dead_letter,
        lambda: app.rebalancing,
        subscriptions_ttl_s=settings.tenant_cache_ttl_s,
    )
    async for batch in stream.take_events(
        settings.sink_batch_size, within=settings.sink_batch_within_s
    ):
        try:
            with held(batch):  # acknowledged only once every event is written or dead-lettered
                await fanout.handle([_source(e) for e in batch])
        except Abandoned as exc:  # its messages keep the extra reference: never acknowledged
            log.warning("outbound_batch_abandoned", step=str(exc), events=len(batch))
