"""The stream iterators (sync and async) against a tiny real SSE server on loopback: it drops
the connection mid-stream and refuses once with 503, and the iterator must resume with
`Last-Event-ID` and neither miss nor repeat an event. (Not Kopilka's endpoint: that test is in
the main suite, tests/e2e/test_sdk.py.)"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from kopilka_client import (
    AsyncKopilkaClient,
    AuthError,
    KopilkaClient,
    ReconnectPolicy,
    RetryPolicy,
)

EVENTS = [{"event_id": f"e{i}", "type": "bonus_awarded", "points": i} for i in range(1, 7)]
FAST = ReconnectPolicy(backoff=RetryPolicy(base_delay_s=0.01, max_delay_s=0.05), idle_timeout_s=5)


class SseServer:
    """Serves EVENTS after the client's Last-Event-ID. Connection 1: two events, then the TCP
    connection is cut mid-event. Connection 2: 503 + Retry-After. Then: the rest, each preceded
    by a heartbeat comment."""

    def __init__(self) -> None:
        self.seen: list[dict] = []  # each connection: headers and query

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({"last": request.headers.get("Last-Event-ID"), **request.query})
        if request.headers.get("Authorization") != "Bearer kpk_ok":
            return web.json_response(
                {"error": "unauthorized", "field": None, "reason": "unknown API key"}, status=401
            )
        connection = len(self.seen)
        if connection == 2:
            return web.json_response(
                {"error": "unavailable", "field": None, "reason": "later"},
                status=503,
                headers={"Retry-After": "0.2"},
            )
        after = request.headers.get("Last-Event-ID")
        start = next((i + 1 for i, e in enumerate(EVENTS) if e["event_id"] == after), 0)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for n, event in enumerate(EVENTS[start:]):
            if connection == 1 and n == 2:  # half an event, then the line goes dead
                await resp.write(f'id: {event["event_id"]}\ndata: {{"type"'.encode())
                request.transport.close()
                return resp
            await resp.write(b": heartbeat\n\n")
            data = json.dumps(event)
            await resp.write(
                f"id: {event['event_id']}\nevent: {event['type']}\ndata: {data}\n\n".encode()
            )
        await asyncio.sleep(30)  # stay open, as a live stream does
        return resp


@pytest.fixture
async def sse_base():
    server = SseServer()
    app = web.Application()
    app.router.add_get("/api/v1/events/stream", server.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", server
    await runner.cleanup()


def check(events, server: SseServer) -> None:
    assert [e.data["event_id"] for e in events] == [
        e["event_id"] for e in EVENTS
    ]  # no gap, no repeat
    assert {e.type for e in events} == {"bonus_awarded"}
    assert [s["last"] for s in server.seen] == [None, "e2", "e2"]
    assert {s.get("types") for s in server.seen} == {"bonus_awarded"}


async def test_the_async_iterator_resumes_after_a_cut_and_a_503(sse_base):
    base, server = sse_base
    async with AsyncKopilkaClient(base, api_key="kpk_ok") as client:
        stream = client.events(types=["bonus_awarded"], policy=FAST)
        got = []
        async with asyncio.timeout(10):
            async for event in stream:
                got.append(event)
                if len(got) == len(EVENTS):
                    break
        await stream.aclose()
        assert stream.last_event_id == "e6"
    check(got, server)


async def test_the_sync_iterator_does_the_same(sse_base):
    base, server = sse_base

    def follow() -> list:
        with KopilkaClient(base, api_key="kpk_ok") as client:
            stream = client.events(types=["bonus_awarded"], policy=FAST)
            got = [next(stream) for _ in EVENTS]
            stream.close()
            return got

    got = await asyncio.wait_for(asyncio.to_thread(follow), 10)
    check(got, server)


async def test_a_refused_key_ends_the_iteration_with_auth_error(sse_base):
    base, server = sse_base
    async with AsyncKopilkaClient(base, api_key="kpk_wrong") as client:
        with pytest.raises(AuthError, match="unknown API key"):
            await client.events(policy=FAST).__anext__()
    assert len(server.seen) == 1  # not retried
