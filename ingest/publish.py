"""Writing to Kafka from the ingress: the accepted body (`webhooks.raw`) and refusals (audit).

The raw record is the JSON of `schemas.messages.RawEnvelope`, encoded here by orjson from the
values the handler already holds: building and dumping the pydantic model cost more than the
rest of the record's way to Kafka. The worker reads it with `RawEnvelope.from_bytes` as before
(tests/ingest/test_publish.py holds the two encodings equal).
"""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from datetime import datetime
from functools import partial

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from ingest.context import BACKGROUND, PRODUCER, SETTINGS
from ingest.responses import error
from kopilka.core import topics
from kopilka.core.logging import get_logger
from schemas.messages import AuditRecord

log = get_logger(__name__)

TOO_LARGE = "the body is too large to store once wrapped: send smaller batches"


def raw_record(
    body: bytes,
    *,
    event_id: str,
    tenant_id: str,
    received_at: datetime,
    content_type: str | None,
    wait: bool,
) -> bytes:
    """The bytes of RawEnvelope.wrap(body, ...).to_bytes(): UTF-8 text as is, else base64."""
    try:
        text, b64 = body.decode("utf-8"), None
    except UnicodeDecodeError:  # e.g. a cp1251 form: keep the exact bytes
        text, b64 = "", base64.b64encode(body).decode("ascii")
    return orjson.dumps(
        {
            "v": 1,
            "event_id": event_id,
            "tenant_id": tenant_id,
            "received_at": received_at,
            "content_type": content_type,
            "body": text,
            "body_b64": b64,
            "wait": wait,
        }
    )


async def publish(
    request: web.Request, tenant_id: str, event_id: str, record: bytes, key: bytes, headers: dict
) -> web.Response | None:
    """None once Kafka acked the record (acks=all); otherwise the answer to send (413 / 503)."""
    settings = request.app[SETTINGS]
    if len(record) > settings.max_record_bytes:  # JSON escaping can grow a body past the cap
        return error(413, "body_too_large", TOO_LARGE, headers=headers)
    try:
        # send() only queues the record (its waits for metadata or buffer space are bounded by
        # the producer's request_timeout_ms, the same setting); the ack is awaited under one
        # shared deadline instead of a timer per request (a uvloop timer each: 3 % of CPU)
        delivery = await request.app[PRODUCER].send(topics.WEBHOOKS_RAW.name, record, key=key)
        await _deadline(settings.publish_timeout_s).wait(delivery)
        return None
    except MessageSizeTooLargeError:
        return error(413, "body_too_large", TOO_LARGE, headers=headers)
    except (KafkaError, TimeoutError) as exc:
        log.error(
            "publish_failed", tenant_id=tenant_id, event_id=event_id, error=type(exc).__name__
        )
        return error(
            503,
            "broker_unavailable",
            "could not store the webhook, retry later",
            headers={"Retry-After": str(settings.retry_after_s)},
        )


class Deadline:
    """Awaits bounded by one timeout, checked by one timer every `tick_s` while any is pending.

    One timeout for all means deadlines come in the order the awaits started: a queue, checked
    from its head. An await ends with TimeoutError between `timeout_s` and `timeout_s + tick_s`
    after it started; the awaited future itself is left alone (its result is simply not waited
    for)."""

    def __init__(self, timeout_s: float, tick_s: float = 0.05) -> None:
        self.timeout_s, self.tick_s = timeout_s, tick_s
        self._queue: deque[tuple[float, asyncio.Future]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def wait(self, awaited: asyncio.Future):
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests run several): start afresh
            self._loop, self._queue, self._timer = loop, deque(), None
        waiter = loop.create_future()
        awaited.add_done_callback(partial(_relay, waiter))
        self._queue.append((loop.time() + self.timeout_s, waiter))
        if self._timer is None:
            self._timer = loop.call_later(self.tick_s, self._expire, loop)
        return await waiter

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        now, queue = loop.time(), self._queue
        while queue and (queue[0][1].done() or queue[0][0] <= now):
            _, waiter = queue.popleft()
            if not waiter.done():
                waiter.set_exception(TimeoutError())
        self._timer = loop.call_later(self.tick_s, self._expire, loop) if queue else None


def _relay(waiter: asyncio.Future, done: asyncio.Future) -> None:
    if waiter.done():  # timed out, or its request went away: mark its outcome as seen
        if not done.cancelled():
            done.exception()
        return
    if done.cancelled():
        waiter.cancel()
    elif done.exception() is not None:
        waiter.set_exception(done.exception())
    else:
        waiter.set_result(done.result())


_DEADLINES: dict[float, Deadline] = {}


def _deadline(timeout_s: float) -> Deadline:
    deadline = _DEADLINES.get(timeout_s)
    if deadline is None:
        deadline = _DEADLINES[timeout_s] = Deadline(timeout_s)
    return deadline


def audit(request: web.Request, record: AuditRecord) -> None:
    """Best effort and off the request path: a refusal is answered whether or not Kafka is up."""
    producer = request.app[PRODUCER]
    tasks = request.app[BACKGROUND]

    async def send() -> None:
        try:
            async with asyncio.timeout(10):
                await producer.send_and_wait(
                    topics.WEBHOOKS_AUDIT.name, record.to_bytes(), key=record.tenant_id.encode()
                )
        except (KafkaError, TimeoutError) as exc:
            log.warning("audit_publish_failed", event_id=record.event_id, error=type(exc).__name__)

    task = asyncio.create_task(send())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
