"""The event stream bench's clients: streams that resume by themselves, paced purchases."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
import orjson

from kopilka.devstack.stack import Stack


class Stream:
    """One client: follows its shop's stream and, when it ends, resumes with Last-Event-ID."""

    def __init__(self, shop: int, tenant_id: str) -> None:
        self.shop, self.tenant_id = shop, tenant_id
        self.got: Counter[str] = Counter()
        self.foreign = 0
        self.last_id: bytes | None = None
        self.connections = 0  # streams opened that sent their first message
        self.connected = asyncio.Event()  # set by each connection's first message

    async def follow(self, session, url: str, key: str, arrivals: dict[str, list[float]]):
        while True:
            headers = {"Authorization": f"Bearer {key}"}
            if self.last_id:
                headers["Last-Event-ID"] = self.last_id.decode()
            try:
                async with session.get(url, headers=headers) as resp:
                    if resp.status == 200:
                        await self._read(resp, arrivals)
            except (aiohttp.ClientError, OSError):
                pass  # the ingress is restarting: try again
            await asyncio.sleep(0.2)

    async def _read(self, resp: aiohttp.ClientResponse, arrivals: dict[str, list[float]]) -> None:
        buf, first = b"", True
        async for chunk in resp.content.iter_any():
            now = time.time()  # wall clock: compared with Kafka's record timestamps too
            *blocks, buf = (buf + chunk).split(b"\n\n")
            for block in blocks:
                if first:
                    first = False
                    self.connections += 1
                    self.connected.set()
                for line in block.split(b"\n", 2)[:2]:
                    if line.startswith(b"id: "):
                        self.last_id = line[4:]
                i = block.find(b"\ndata: ")
                if i < 0:
                    continue  # a position or a heartbeat
                event = orjson.loads(block[i + 7 :])
                if event["tenant_id"] != self.tenant_id:
                    self.foreign += 1
                elif event["type"] == "bonus_awarded":
                    order = event["order_id"]
                    self.got[order] += 1
                    arrivals.setdefault(order, []).append(now)


class Run:
    """The streams, the shops and what was sent, for one measurement."""

    def __init__(self, stack: Stack, session, tenants: list[dict], streams: int) -> None:
        settings = stack.settings()
        self.stack, self.session, self.tenants = stack, session, tenants
        self.base = f"http://{settings.http_host}:{settings.http_port}"
        shops = len(tenants)
        self.readers = [Stream(i % shops, tenants[i % shops]["tenant_id"]) for i in range(streams)]
        self.expected: dict[int, set[str]] = {i: set() for i in range(shops)}
        self.sent: dict[str, float] = {}  # order -> when its POST began
        self.arrivals: dict[str, list[float]] = {}  # order -> arrivals on its shop's streams
        self.statuses: Counter[int] = Counter()

    def open(self) -> list[asyncio.Task]:
        url = f"{self.base}/api/v1/events/stream"
        return [
            asyncio.create_task(
                r.follow(self.session, url, self.tenants[r.shop]["api_key"], self.arrivals)
            )
            for r in self.readers
        ]

    async def post(self, orders: range, rate: float) -> None:
        """Purchases SB-<i> for i in `orders`, at `rate` per second, round robin over shops."""
        shops, t0, posts = len(self.tenants), time.perf_counter(), []

        async def one(i: int) -> None:
            shop, order = i % shops, f"SB-{i}"
            body = {
                "action": "purchase",
                "payload": {"orderId": order, "amount": 1000, "email": f"sb-{i}@bench.example"},
            }
            self.sent[order] = time.time()
            url = f"{self.base}/api/webhook/{self.tenants[shop]['webhook_secret']}"
            async with self.session.post(url, json=body) as resp:
                self.statuses[resp.status] += 1
                if resp.status == 202:
                    self.expected[shop].add(order)

        for n, i in enumerate(orders):
            delay = t0 + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(one(i)))
        await asyncio.gather(*posts)

    async def wait_complete(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.expected[r.shop] <= r.got.keys() for r in self.readers):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # anything extra (a duplicate, a stray) would arrive now

    def delivery(self, orders: set[str]) -> dict:
        """Deliveries of these orders: expected, done, missing, duplicated; foreign events."""
        want = {r: self.expected[r.shop] & orders for r in self.readers}
        return {
            "deliveries_expected": sum(len(w) for w in want.values()),
            "deliveries": sum(sum(r.got[o] for o in w) for r, w in want.items()),
            "missing": sum(len(w - r.got.keys()) for r, w in want.items()),
            "duplicates": sum(r.got[o] - 1 for r, w in want.items() for o in w if r.got[o] > 1),
            "foreign": sum(r.foreign for r in self.readers),
            "streams_complete": sum(w <= r.got.keys() for r, w in want.items()),
        }


def orders_of(numbers: range) -> set[str]:
    return {f"SB-{i}" for i in numbers}
