"""Loopback stand-ins for the outside world: a shop's webhook receiver and Telegram's Bot API.

Both are real aiohttp servers that Kopilka's dispatcher reaches over real HTTP; each test
scripts the answers (per path / per chat) and reads back what arrived and when.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

import orjson
from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    answered: int = 0

    def json(self) -> dict:
        return orjson.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


async def serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


class Receiver:
    """A shop's callback endpoint: `script(path, answers...)`; unscripted requests get 200."""

    def __init__(self) -> None:
        self.received: dict[str, list[Received]] = defaultdict(list)
        self.answers: dict[str, deque[Answer]] = defaultdict(deque)
        self.base = ""
        self._runner: web.AppRunner | None = None

    def script(self, path: str, *answers: Answer) -> str:
        self.answers[path].extend(answers)
        return self.base + path

    async def handle(self, request: web.Request) -> web.Response:
        rec = Received(request.path, dict(request.headers), await request.read(), time.monotonic())
        self.received[request.path].append(rec)
        queue = self.answers[request.path]
        answer = queue.popleft() if queue else Answer()
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        rec.answered = answer.status
        return web.Response(status=answer.status, headers=answer.headers, text="ok")

    async def wait_for(self, path: str, count: int, timeout_s: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.received[path]) >= count:
                return self.received[path]
            await asyncio.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.received[path])} of {count} requests arrived")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner, port = await serve(app)
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


@dataclass
class SentMessage:
    chat_id: int
    text: str
    at: float
    answered: int


class FakeBotApi:
    """Telegram's Bot API as aiogram calls it: POST /bot<token>/sendMessage.

    `script(chat_id, ...)` queues answers for a chat: "ok", ("retry_after", n) -> 429,
    "forbidden" -> 403, "down" -> 502 Bad Gateway. Every call is recorded, answered or not.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[SentMessage] = []
        self.answers: dict[int, deque] = defaultdict(deque)
        self._runner: web.AppRunner | None = None

    def script(self, chat_id: int, *answers) -> None:
        self.answers[chat_id].extend(answers)

    def delivered(self, chat_id: int) -> list[SentMessage]:
        return [c for c in self.calls if c.chat_id == chat_id and c.answered == 200]

    def tried(self, chat_id: int) -> list[SentMessage]:
        return [c for c in self.calls if c.chat_id == chat_id]

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        form = await request.post() if request.content_type != "application/json" else {}
        if not form:
            form = await request.json()
        chat_id, text = int(form["chat_id"]), str(form["text"])
        queue = self.answers[chat_id]
        answer = queue.popleft() if queue else "ok"
        if isinstance(answer, tuple) and answer[0] == "retry_after":
            status, body = (
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {answer[1]}",
                    "parameters": {"retry_after": answer[1]},
                },
            )
        elif answer == "forbidden":
            status, body = (
                403,
                {
                    "ok": False,
                    "error_code": 403,
                    "description": "Forbidden: bot was blocked by the user",
                },
            )
        elif answer == "down":
            status, body = 502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}
        else:
            status, body = (
                200,
                {
                    "ok": True,
                    "result": {
                        "message_id": len(self.calls) + 1,
                        "date": int(time.time()),
                        "chat": {"id": chat_id, "type": "private"},
                        "text": text,
                    },
                },
            )
        self.calls.append(SentMessage(chat_id, text, time.monotonic(), status))
        return web.json_response(body, status=status)

    async def wait_delivered(self, chat_id: int, count: int, timeout_s: float = 30.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.delivered(chat_id)) >= count:
                return self.delivered(chat_id)
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"chat {chat_id}: {len(self.delivered(chat_id))} of {count} delivered; "
            f"calls: {self.tried(chat_id)}"
        )

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.handle)
        self._runner, _ = await serve(app, port)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
