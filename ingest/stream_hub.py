"""One shared tail of `loyalty.events` per ingress process, fanned out to the open streams.

The hub's consumer has no group: it is assigned every partition, starts at the end, and reads
on for as long as the process lives, however many streams are open (none included). For each
record it advances `vector`, the next offset to read per partition, and hands the record, with a
snapshot of that vector, to the subscribers of the record's tenant (the tenant id is the key's
prefix, `tenant_id:customer_id`, and the value's `tenant_id` must agree). Everything happens in
one synchronous step per fetched batch, so a subscriber registered between two steps gets every
record from the vector it was given onwards, and no earlier one.

Each subscriber has a bounded queue. A subscriber that falls `QUEUE_LIMIT` records behind (a
client that reads too slowly) is dropped, not waited for: its stream ends after what it already
holds, and the client resumes with its last token. Nobody else slows down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from ingest import stream_token
from ingest.context import SETTINGS
from ingest.stream_catchup import BacklogReaders
from kopilka.core import topics
from kopilka.core.kafka import assign_whole_topic
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings

log = get_logger(__name__)

QUEUE_LIMIT = 10_000  # records one stream may have waiting before it is dropped
CATCH_UP_SLOTS = 8  # resuming streams reading their backlog with their own consumer at once


@dataclass(slots=True)
class Item:
    """One record of a subscribed tenant, as the hub saw it."""

    partition: int
    offset: int
    type: str
    value: bytes
    vector: tuple[int, ...]  # the hub's next offsets right after this record
    _token: str | None = None

    def token(self) -> str:
        """The resume token at this record, encoded once for every subscriber that needs it."""
        if self._token is None:
            self._token = stream_token.encode(self.vector)
        return self._token


@dataclass(eq=False)
class Subscriber:
    tenant: bytes
    items: deque[Item] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    heartbeat_due: bool = False
    ended: str | None = None  # why the hub stopped feeding it: "too_slow", "shutdown"
    # set by the stream while a write waits for the client to read (aiohttp's drain), and how
    # to cut the connection then: a client that stopped reading must not hold its stream open
    writing: bool = False
    abort: Callable[[], None] | None = None

    def drain(self) -> list[Item]:
        items = list(self.items)
        self.items.clear()
        self.wake.clear()
        return items

    def end(self, reason: str) -> None:
        self.ended = reason
        self.wake.set()
        if self.writing and self.abort is not None:
            self.abort()


class EventHub:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._subscribers: dict[bytes, set[Subscriber]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task] = []
        self.vector: list[int] = []
        self.catch_up_slots = asyncio.Semaphore(CATCH_UP_SLOTS)
        self.backlog_readers = BacklogReaders(settings)

    @property
    def settings(self) -> Settings:
        return self._settings

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_list,
            enable_auto_commit=False,
            group_id=None,
            client_id=f"{self._settings.worker_id}-ingest-events",
            # the broker answers a fetch as soon as a record is there: a long wait costs no
            # latency, only fewer empty round trips while nothing happens
            fetch_max_wait_ms=500,
        )
        await consumer.start()
        try:
            tps = await assign_whole_topic(consumer, topics.EVENTS.name)
            await consumer.seek_to_end(*tps)
            self.vector = [await consumer.position(tp) for tp in tps]
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._tasks = [
            asyncio.create_task(self._follow()),
            asyncio.create_task(self._heartbeats()),
        ]
        log.info("event_hub_started", partitions=len(self.vector))

    async def stop(self) -> None:
        self.end_all("shutdown")
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            await self._consumer.stop()
        await self.backlog_readers.close()

    async def end_offsets(self) -> list[int]:
        """The topic's current end offset per partition, asked of the broker now."""
        tps = sorted(self._consumer.assignment(), key=lambda tp: tp.partition)
        ends = await self._consumer.end_offsets(tps)
        return [ends[tp] for tp in tps]

    def subscribe(self, tenant_id: str) -> tuple[Subscriber, tuple[int, ...]]:
        """A new subscriber, and the vector from which it gets every record of its tenant."""
        sub = Subscriber(tenant_id.encode())
        self._subscribers.setdefault(sub.tenant, set()).add(sub)
        return sub, tuple(self.vector)

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subscribers.get(sub.tenant)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.tenant]

    def end_all(self, reason: str) -> None:
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                self.unsubscribe(sub)
                sub.end(reason)

    @property
    def streams(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._settings.event_stream_heartbeat_s)
            for subs in self._subscribers.values():
                for sub in subs:
                    sub.heartbeat_due = True
                    sub.wake.set()

    async def _follow(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker away: streams only wait (heartbeats go on)
                log.warning("event_hub_fetch_failed", error=type(exc).__name__)
                await asyncio.sleep(1)
                continue
            for tp, records in batch.items():
                self._fan_out(tp.partition, records)

    def _fan_out(self, partition: int, records) -> None:
        vector, subscribers = self.vector, self._subscribers
        for record in records:
            vector[partition] = record.offset + 1
            tenant = (record.key or b"").partition(b":")[0]
            subs = subscribers.get(tenant)
            if not subs:
                continue
            try:
                event = orjson.loads(record.value)
                kind, owner = event["type"], event["tenant_id"]
            except (ValueError, KeyError, TypeError):
                log.error("event_unreadable", partition=partition, offset=record.offset)
                continue
            if owner.encode() != tenant:
                log.error("event_tenant_mismatch", partition=partition, offset=record.offset)
                continue
            item = Item(partition, record.offset, kind, record.value, tuple(vector))
            for sub in list(subs):
                if len(sub.items) >= QUEUE_LIMIT:
                    self.unsubscribe(sub)
                    sub.end("too_slow")
                    log.warning("event_stream_too_slow", tenant_id=owner, queued=QUEUE_LIMIT)
                    continue
                sub.items.append(item)
                sub.wake.set()


EVENT_HUB = web.AppKey("event_hub", EventHub)


async def event_hub(app: web.Application):
    """cleanup_ctx: the shared tail of loyalty.events, for the process's lifetime."""
    hub = EventHub(app[SETTINGS])
    await hub.start()
    app[EVENT_HUB] = hub
    yield
    await hub.stop()


async def end_streams(app: web.Application) -> None:
    """on_shutdown: end every open stream now, so the server need not wait for them to close."""
    hub = app.get(EVENT_HUB)
    if hub is not None:
        hub.end_all("shutdown")
