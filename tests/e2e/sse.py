"""A small Server-Sent Events reader over aiohttp, for the event stream's end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Message:
    id: str | None = None
    event: str | None = None
    data: bytes | None = None
    comments: list[bytes] = field(default_factory=list)


class EventStream:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.last_id: str | None = None  # as an EventSource keeps it

    async def message(self, timeout_s: float = 30.0) -> Message:
        """The next message (a block ended by a blank line), events and id-only ones alike."""
        msg, data = Message(), []
        async with asyncio.timeout(timeout_s):
            while True:
                line = await self.resp.content.readline()
                if not line:
                    raise EOFError("the stream ended")
                line = line.rstrip(b"\n")
                if not line:
                    if msg.id is None and msg.event is None and not data and not msg.comments:
                        continue
                    if data:
                        msg.data = b"\n".join(data)
                    if msg.id is not None:
                        self.last_id = msg.id
                    return msg
                name, _, value = line.partition(b":")
                value = value[1:] if value.startswith(b" ") else value
                if not name:
                    msg.comments.append(value)
                elif name == b"id":
                    msg.id = value.decode()
                elif name == b"event":
                    msg.event = value.decode()
                elif name == b"data":
                    data.append(value)

    async def event(self, timeout_s: float = 30.0) -> Message:
        """The next message that is an event (has data)."""
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await self.message(timeout_s)
                if msg.data is not None:
                    return msg

    async def events(self, n: int, timeout_s: float = 30.0) -> list[Message]:
        return [await self.event(timeout_s) for _ in range(n)]


@contextlib.asynccontextmanager
async def open_stream(
    session: aiohttp.ClientSession,
    base: str,
    api_key: str,
    *,
    last_event_id: str | None = None,
    query: dict | None = None,
    header: bool = True,
):
    """An open stream, once its first (position) message has arrived: subscribed from there."""
    headers = {"Authorization": f"Bearer {api_key}"}
    params = dict(query or {})
    if last_event_id and header:
        headers["Last-Event-ID"] = last_event_id
    elif last_event_id:
        params["last_event_id"] = last_event_id
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with session.get(
        f"{base}/api/v1/events/stream", headers=headers, params=params, timeout=timeout
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        stream = EventStream(resp)
        first = await stream.message()
        assert first.id is not None and first.data is None
        yield stream
