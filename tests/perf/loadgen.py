"""A wrk-like HTTP/1.1 load generator: C keep-alive connections, one request in flight on each.

The project does not install `wrk`, and an aiohttp client costs more CPU per request than a bare
aiohttp server, so on a 2-core machine it would measure itself. This client writes pre-built
request bytes on raw asyncio transports and reads only the status line and the body length
(Content-Length or chunked), so its own CPU per request is a fraction of the server's. Its CPU
is reported (`client_cpu_s`) so a reader can tell when the client, not the server, was the limit.

With uvloop installed (a dev dependency), `run()` uses it: it halves the client's CPU per
request (45 against 85 us, measured against tests/perf/bare_server.py), leaving the CPU to the
servers. The servers measured keep their own event loop.

Bodies come from a factory `make(n) -> bytes`, called once per request, and are POSTed to one
path as application/json. Timings are measured, never asserted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

BodyFactory = Callable[[int], bytes]
T = TypeVar("T")


def purchase_factory(prefix: str, customers: int = 2_000) -> BodyFactory:
    """Standard purchases, each with a fresh order id, spread over `customers` customers."""

    def make(n: int) -> bytes:
        return (
            b'{"action":"purchase","payload":{"email":"buyer%d@bench.example.com",'
            b'"amount":1234.5,"orderId":"%s-%08d","description":"bench"}}'
            % (n * 7919 % customers, prefix.encode(), n)
        )

    return make


@dataclass
class Result:
    requests: int = 0  # answered
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    started: float = 0.0  # perf_counter when the first request went out
    elapsed: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def count(self, status: str) -> int:
        return self.statuses.get(status, 0)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: send, read the whole answer, send the next."""

    def __init__(self, run: _Run) -> None:
        self.run, self.buf, self.transport = run, b"", None
        self.sent_at, self.head_end, self.need = 0.0, -1, -1
        self.status, self.chunked = "", False
        self.done: asyncio.Future[None] = run.loop.create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send_next()

    def _send_next(self) -> None:
        request = self.run.next_request()
        if request is None:
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.head_end < 0:
                self.head_end = self.buf.find(b"\r\n\r\n")
                if self.head_end < 0:
                    return
                head = self.buf[: self.head_end].lower()
                self.status = head[9:12].decode()
                at = head.find(b"\r\ncontent-length:")
                if at >= 0:
                    end = head.find(b"\r\n", at + 2)
                    self.need = self.head_end + 4 + int(head[at + 17 : end if end > 0 else None])
                else:
                    self.chunked, self.need = b"chunked" in head, -1
            if self.chunked:
                end = self.buf.find(b"\r\n0\r\n\r\n", self.head_end)
                if end < 0 and not self.buf.startswith(b"0\r\n\r\n", self.head_end + 4):
                    return
                self.need = (end + 7) if end >= 0 else self.head_end + 9
            if len(self.buf) < self.need:
                return
            self.buf = self.buf[self.need :]
            self.run.answered(self.status, time.perf_counter() - self.sent_at)
            self.head_end, self.need, self.chunked = -1, -1, False
            self._send_next()
            if not self.buf:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head_end >= 0 or self.need >= 0:  # an answer was cut short
            self.run.answered(type(exc).__name__ if exc else "closed", 0.0)
        if not self.done.done():
            self.done.set_result(None)


class _Run:
    def __init__(self, host, port, path, make, count, deadline, keep_latencies) -> None:
        self.loop = asyncio.get_running_loop()
        self.make = make
        self.head = b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n" % (
            path.encode(),
            host.encode(),
            port,
        )
        self.count, self.deadline, self.keep = count, deadline, keep_latencies
        self.n, self.result = 0, Result()

    def next_request(self) -> bytes | None:
        if self.count is not None and self.n >= self.count:
            return None
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return None
        body = self.make(self.n)
        self.n += 1
        return b"%sContent-Length: %d\r\n\r\n%s" % (self.head, len(body), body)

    def answered(self, status: str, latency: float) -> None:
        self.result.requests += 1
        self.result.statuses[status] += 1
        if self.keep:
            self.result.latencies.append(latency)


async def hammer(
    host: str,
    port: int,
    path: str,
    make: BodyFactory,
    *,
    concurrency: int = 64,
    count: int | None = None,
    seconds: float | None = None,
    keep_latencies: bool = True,
) -> Result:
    """Send `count` requests, or as many as fit in `seconds`, over `concurrency` connections."""
    if count is None and seconds is None:
        raise ValueError("give count or seconds")
    cpu0, started = time.process_time(), time.perf_counter()
    deadline = started + seconds if seconds is not None else None
    run = _Run(host, port, path, make, count, deadline, keep_latencies)
    run.result.started = started
    conns = [
        (await run.loop.create_connection(lambda: _Connection(run), host, port))[1]
        for _ in range(concurrency)
    ]
    await asyncio.gather(*(c.done for c in conns))
    run.result.elapsed = time.perf_counter() - started
    run.result.client_cpu_s = time.process_time() - cpu0
    return run.result


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]
