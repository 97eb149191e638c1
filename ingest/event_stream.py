"""`GET /api/v1/events/stream`: a shop's `loyalty.events` as Server-Sent Events, resumable.

Each message is `id: <token>`, `event: <type>`, `data: <the event's JSON, unchanged>`. The
token (ingest.stream_token) is a vector V of Kafka offsets, one per partition of the topic,
with this meaning: *for every partition p, every record of this shop below V[p] has been
sent on this stream (when it matched the filter) and none at or above V[p] has*. A shop's events
are spread over every partition (the key is tenant:customer), so no single offset could say
that; a vector can, because within a partition Kafka's order is fixed.

Why resuming from a token has no gap and no duplicate:
- Records are read in offset order within each partition, and each record advances only its
  own partition's entry, to its offset + 1, when it is sent (or passed over by the filter).
  So the invariant holds after every message, whatever the interleaving across partitions.
- Live records come from the process's one shared consumer (ingest.stream_hub), whose own
  vector H says the same of every record it fanned out; a record's token is the element-wise
  max of the stream's vector and H at that record, which keeps the invariant (all of the
  shop's records below H reached this stream's queue before this one did).
- Resuming from V: the stream subscribes to the hub (from H0, the hub's vector at that instant),
  then reads partitions where V[p] < H0[p] from V[p] up to H0[p] with a short-lived consumer of
  its own (ingest.stream_catchup), then sends what the hub queued meanwhile, skipping records
  below the stream's vector (the partitions where V[p] > H0[p]: a token from a replica that
  was a few records ahead). Each record at or above V is thus sent exactly once. A V[p] beyond
  the topic's end offset is refused (422): it can only come from another cluster or a topic
  re-created since, and skipping up to it would be a gap.
- The vector is made of Kafka offsets, which mean the same to every ingress process and across
  restarts; nothing is kept on the server. A partition added after the token was made is read
  from its start. A token older than Kafka's retention (7 days) resumes at the oldest record
  kept: those in between are gone for every consumer.
- "No duplicate" is about the stream's records: after a worker crash the topic itself may hold
  an event twice (same `event_id`, at-least-once); clients dedupe on `event_id` as any consumer.

Besides events, the stream sends `id:`-only messages (no data: an EventSource updates its
lastEventId without firing an event): the starting position right after connecting, and the
current one with each heartbeat comment (`: heartbeat`, every event_stream_heartbeat_s), so a
client that saw no event (filtered, quiet shop) still resumes from where it was.
`Last-Event-ID` is read from the header (what EventSource sends when it reconnects) and else from
`?last_event_id=`, for clients that cannot set headers.
"""

from __future__ import annotations

import contextlib

import orjson
from aiohttp import web

from ingest import stream_token
from ingest.openapi import Param, Resp, documented, errors
from ingest.read_api import bearer_tenant
from ingest.responses import error
from ingest.stream_catchup import read_backlog
from ingest.stream_hub import EVENT_HUB, EventHub, Item, Subscriber
from kopilka.core.logging import get_logger
from schemas.events import EVENT_TYPES

log = get_logger(__name__)

_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each message on at once
}


class _Gone(Exception):
    """The client went away or the hub stopped feeding this stream."""


@documented(
    "The shop's loyalty events, live (Server-Sent Events)",
    tags=["read"],
    description=(
        "Each message: `id` (resume token), `event` (the type), `data` (the event JSON). Resume"
        " with the `Last-Event-ID` header (or `?last_event_id=`): no gap, no duplicate."
    ),
    parameters=[
        Param("types", "query", "comma-separated event types to send (default: every type)"),
        Param("last_event_id", "query", "resume token, when the header cannot be set"),
        Param("Last-Event-ID", "header", "resume token (the `id` of the last message seen)"),
    ],
    responses={
        200: Resp("an endless text/event-stream", None, media="text/event-stream"),
        **errors(422),
        **errors(401, headers={"WWW-Authenticate": True}),
    },
    security="apiKey",
)
async def stream_events(request: web.Request) -> web.StreamResponse:
    tenant = await bearer_tenant(request)
    if isinstance(tenant, web.Response):
        return tenant
    types = None
    if "types" in request.query:
        names = {t.strip() for t in request.query["types"].split(",") if t.strip()}
        unknown = sorted(names - EVENT_TYPES.keys())
        if unknown or not names:
            known = ", ".join(EVENT_TYPES)
            reason = f"unknown event type {unknown[0]!r}" if unknown else "no event type given"
            return error(422, "invalid_field", f"{reason}; known: {known}", "types")
        types = frozenset(names)
    return await stream_response(request, tenant.id, types)


async def stream_response(
    request: web.Request, tenant_id: str, types: frozenset[str] | None
) -> web.StreamResponse:
    """Stream `tenant_id`'s events (only those of `types`, all when None) to this request,
    resuming from its Last-Event-ID header or ?last_event_id= query. The caller has
    authenticated the request for this tenant; a bad token is answered 422 here."""
    hub = request.app[EVENT_HUB]
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    field = "Last-Event-ID" if request.headers.get("Last-Event-ID") else "last_event_id"
    resume = None
    if raw:
        try:
            resume = stream_token.decode(raw.strip())
        except stream_token.InvalidToken as exc:
            return error(422, "invalid_field", f"not a token of this stream: {exc}", field)
        if len(resume) > len(hub.vector):
            return error(422, "invalid_field", "token of a topic with more partitions", field)
        # ahead of this process's tail: another replica's token, a few records ahead; or one
        # beyond the topic's end (another cluster, a re-created topic), which would skip events
        if any(t > h for t, h in zip(resume, hub.vector, strict=False)):
            ends = await hub.end_offsets()
            if any(t > e for t, e in zip(resume, ends, strict=False)):
                return error(422, "invalid_field", "token beyond the end of the topic", field)

    resp = web.StreamResponse(headers=_HEADERS)
    await resp.prepare(request)
    stream = _Stream(request, resp, hub, tenant_id, types)
    try:
        await stream.run(resume)
    except (_Gone, ConnectionError):
        pass
    finally:
        hub.unsubscribe(stream.sub)
    log.info("event_stream_closed", tenant_id=tenant_id, reason=stream.sub.ended or "client")
    return resp


class _Stream:
    def __init__(self, request, resp, hub: EventHub, tenant_id: str, types) -> None:
        self.request, self.resp, self.hub, self.types = request, resp, hub, types
        self.tenant_id = tenant_id
        self.sub = Subscriber(tenant_id.encode())  # until subscribed
        self.vector: list[int] = []  # the stream's vector (see the module docstring)
        self.ahead: dict[int, int] = {}  # partitions where it is ahead of the hub's
        self.sent_token: str | None = None

    async def run(self, resume: tuple[int, ...] | None) -> None:
        if resume is None:
            self.sub, start = self.hub.subscribe(self.tenant_id)
            self.vector = list(start)
            await self._write(self._position(self.vector))
        else:
            async with self.hub.catch_up_slots:  # few private consumers at once; others wait
                self.sub, start = self.hub.subscribe(self.tenant_id)
                # partitions missing from the token came after it was made: from their start
                self.vector = list(resume) + [0] * (len(start) - len(resume))
                self.ahead = {p: v for p, v in enumerate(self.vector) if v > start[p]}
                await self._write(self._position(self.vector))
                ranges = {p: (v, start[p]) for p, v in enumerate(self.vector) if v < start[p]}
                if ranges:
                    await self._catch_up(ranges)
        await self._live()

    async def _live(self) -> None:
        while True:
            await self.sub.wake.wait()
            items, hub_vector = self.sub.drain(), tuple(self.hub.vector)
            out = bytearray()
            for item in items:
                if self.ahead and self._skip(item):
                    continue
                token = self._live_token(item)
                if self.types is None or item.type in self.types:
                    out += _message(token, item.type, item.value)
                    self.sent_token = token
            if self.sub.heartbeat_due:
                self.sub.heartbeat_due = False
                out += b": heartbeat\n" + self._position(_max(self.vector, hub_vector))
            if out:
                await self._write(bytes(out))
            if self.sub.ended:
                raise _Gone

    def _skip(self, item: Item) -> bool:
        floor = self.ahead.get(item.partition)
        if floor is None:
            return False
        if item.offset < floor:
            return True
        del self.ahead[item.partition]  # the hub has passed the token here
        return False

    def _live_token(self, item: Item) -> str:
        if not self.ahead:  # the usual case: the hub's vector covers the stream's
            self.vector = list(item.vector)
            return item.token()
        self.vector = _max(self.vector, item.vector)
        return stream_token.encode(self.vector)

    async def _catch_up(self, ranges: dict[int, tuple[int, int]]) -> None:
        backlog = read_backlog(self.hub.backlog_readers, ranges, self.sub.tenant)
        async with contextlib.aclosing(backlog):  # its consumer stops even if the client left
            async for batch in backlog:
                await self._send_backlog(batch)
        for p, (_start, end) in ranges.items():
            self.vector[p] = max(self.vector[p], end)

    async def _send_backlog(self, batch: list[tuple[int, int, bytes]]) -> None:
        """Send one batch of the backlog, the stream's vector advancing record by record."""
        out = bytearray()
        for partition, offset, value in batch:
            self.vector[partition] = offset + 1
            try:
                event = orjson.loads(value)
                kind, owner = event["type"], event["tenant_id"]
            except (ValueError, KeyError, TypeError):
                log.error("event_unreadable", partition=partition, offset=offset)
                continue
            if owner != self.tenant_id:
                log.error("event_tenant_mismatch", partition=partition, offset=offset)
                continue
            if self.types is None or kind in self.types:
                self.sent_token = stream_token.encode(self.vector)
                out += _message(self.sent_token, kind, value)
        if self.sub.heartbeat_due:
            self.sub.heartbeat_due = False
            out += b": heartbeat\n\n"
        if out:
            await self._write(bytes(out))
        if self.sub.ended:
            raise _Gone

    def _position(self, vector) -> bytes:
        """An id-only message (no event fired) with this position, unless it was the last sent."""
        token = stream_token.encode(vector)
        if token == self.sent_token:
            return b"\n"
        self.sent_token = token
        return b"id: " + token.encode() + b"\n\n"

    async def _write(self, data: bytes) -> None:
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise _Gone
        self.sub.abort, self.sub.writing = transport.abort, True
        try:
            await self.resp.write(data)
        finally:
            self.sub.writing = False


def _max(a, b) -> list[int]:
    return [x if x >= y else y for x, y in zip(a, b, strict=True)]


def _message(token: str, kind: str, value: bytes) -> bytes:
    lines = value.splitlines() or [b""]  # the JSON is one line; were it not, it stays whole
    data = b"".join(b"data: " + line + b"\n" for line in lines)
    return b"id: " + token.encode() + b"\nevent: " + kind.encode() + b"\n" + data + b"\n"
