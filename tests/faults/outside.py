"""The outside world of the dispatcher fault scenario, on loopback: a shop's webhook endpoint and
Telegram's Bot API, both real aiohttp servers that `kopilka dispatch` reaches over real HTTP.

Each answers after a short delay, so that requests are in flight long enough for the scenario to
kill the dispatcher while one is being served (`in_flight`). A request counts as delivered when
it arrived, whether or not the dispatcher lived to read the answer: a real endpoint acts on a
delivery it received, and Telegram posts a message it was asked to post.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
from aiohttp import web


@dataclass
class Delivery:
    webhook_id: str | None
    event_id: str | None
    signed: bool
    at: float


@dataclass
class Message:
    chat_id: int
    text: str
    at: float


async def _serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    # handlers run to the end even when the client went away (aiohttp's default since 3.9)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


class Endpoint:
    """A shop's callback URL: records every delivery (its `webhook-id`, the event inside)."""

    def __init__(self, delay_s: float = 0.2) -> None:
        self.delay_s = delay_s
        self.deliveries: list[Delivery] = []
        self.in_flight = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        try:
            body = await request.read()
            try:
                event_id = orjson.loads(body).get("event_id")
            except (orjson.JSONDecodeError, AttributeError):
                event_id = None
            self.deliveries.append(
                Delivery(
                    request.headers.get("webhook-id"),
                    event_id,
                    bool(request.headers.get("webhook-signature")),
                    time.monotonic(),
                )
            )
            await asyncio.sleep(self.delay_s)
            return web.Response(text="ok")
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner, port = await _serve(app)
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


class BotApi:
    """Telegram's Bot API as aiogram calls it (POST /bot<token>/sendMessage); every message it
    was asked to send is recorded and answered as sent."""

    def __init__(self, token: str, delay_s: float = 0.1) -> None:
        self.token, self.delay_s = token, delay_s
        self.messages: list[Message] = []
        self.in_flight = 0
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        self.in_flight += 1
        try:
            form = await request.post() if request.content_type != "application/json" else {}
            if not form:
                form = await request.json()
            chat_id, text = int(form["chat_id"]), str(form["text"])
            self.messages.append(Message(chat_id, text, time.monotonic()))
            await asyncio.sleep(self.delay_s)
            result = {
                "message_id": len(self.messages),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "text": text,
            }
            return web.json_response({"ok": True, "result": result})
        finally:
            self.in_flight -= 1

    async def start(self, port: int = 0) -> int:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.handle)
        self._runner, port = await _serve(app, port)
        return port

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
