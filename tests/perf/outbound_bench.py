"""Outbound benchmark: webhook POST -> the shop's callback receiving `bonus_awarded`.

    make bench-outbound                      # or: .venv/bin/python tests/perf/outbound_bench.py

A fresh stack (Kafka, Postgres, ingest, worker, dispatch) in .data/bench-outbound, the
production retry schedule, 127.0.0.0/8 allowed for the loopback receiver.
Phase 1: N purchases (default 1,000), each a new customer, latency = from sending the purchase
to the receiver getting its signed bonus_awarded; p50/p99 printed twice: paced at --rate (100/s,
below what the pipeline sustains, so it is the latency of one event) and as fast as C
connections go (a burst: a queue builds up and the latency is mostly waiting in it).
Phase 2: the receiver is down (port closed) while M purchases are sent and for --down-s seconds;
then it comes back and one more purchase arrives (shops keep selling): the time until every
delivery has arrived is printed.
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import aiohttp
import orjson
from aiohttp import web
from benchkit import UNLIMITED

from kopilka.cli.main import create_tenant_json, edge_json
from kopilka.core import db
from kopilka.devstack import devservices
from kopilka.devstack.stack import Stack
from kopilka.directory.subscriptions import add_endpoint


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


class Receiver:
    def __init__(self, port: int) -> None:
        self.port, self.arrived, self.runner = port, {}, None

    async def handle(self, request: web.Request) -> web.Response:
        event = orjson.loads(await request.read())
        self.arrived.setdefault(event["order_id"], time.perf_counter())
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self.runner.cleanup()


async def post_all(
    url: str, orders: list[str], concurrency: int, sent: dict, rate: float | None = None
) -> None:
    """POST a purchase per order; with `rate`, paced to that many per second (else flat out)."""
    queue = list(reversed(orders))
    started = time.perf_counter()

    async def worker(session):
        while queue:
            n = len(orders) - len(queue)
            order = queue.pop()
            if rate:
                await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            body = {
                "action": "purchase",
                "payload": {
                    "email": f"{order}@bench.example.com",
                    "amount": 1000,
                    "orderId": order,
                },
            }
            sent[order] = time.perf_counter()
            async with session.post(url, json=body) as resp:
                assert resp.status == 202, await resp.text()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


async def wait_all(receiver: Receiver, orders: list[str], timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if all(o in receiver.arrived for o in orders):
            return True
        await asyncio.sleep(0.05)
    return False


async def run(stack: Stack, args) -> dict:
    settings = stack.settings()
    dsn = settings.database_url.get_secret_value()
    tenant = await create_tenant_json(settings, name="Bench")
    await edge_json(dsn, tenant["tenant_id"], **UNLIMITED)
    receiver = Receiver(devservices.free_port())
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    await add_endpoint(pool, tenant["tenant_id"], f"http://127.0.0.1:{receiver.port}/hook", None)
    await pool.close()
    url = f"http://{settings.http_host}:{settings.http_port}/api/webhook/{tenant['webhook_secret']}"
    await receiver.start()
    await asyncio.sleep(2)  # the fan-out's subscription cache sees the endpoint
    figures: dict = {}

    warm = [f"W-{i}" for i in range(50)]
    await post_all(url, warm, 4, {})
    await wait_all(receiver, warm, 60)

    for label, rate in (("paced", args.rate), ("burst", None)):
        orders = [
            f"{label[0].upper()}-{i:05d}-{uuid.uuid4().hex[:6]}" for i in range(args.purchases)
        ]
        sent = {}
        t0 = time.perf_counter()
        await post_all(url, orders, args.concurrency, sent, rate)
        ok = await wait_all(receiver, orders, 300)
        ms = [(receiver.arrived[o] - sent[o]) * 1000 for o in orders if o in receiver.arrived]
        figures.update(
            {
                f"{label}_purchases": args.purchases,
                f"{label}_rate_per_s": rate or "as fast as 8 connections go",
                f"{label}_all_delivered": ok,
                f"{label}_e2e_p50_ms": round(percentile(ms, 50), 1),
                f"{label}_e2e_p99_ms": round(percentile(ms, 99), 1),
                f"{label}_e2e_max_ms": round(max(ms), 1),
                f"{label}_seconds": round(time.perf_counter() - t0, 2),
            }
        )

    await receiver.stop()
    down = [f"D-{i:05d}" for i in range(args.down_purchases)]
    await post_all(url, down, args.concurrency, {})
    await asyncio.sleep(args.down_s)
    await receiver.start()
    back = time.perf_counter()
    await post_all(url, ["BACK-1"], 1, {})
    ok = await wait_all(receiver, [*down, "BACK-1"], args.recover_timeout)
    figures.update(
        down_purchases=args.down_purchases,
        down_s=args.down_s,
        recovered=ok,
        recovery_s=round(time.perf_counter() - back, 2) if ok else f">{args.recover_timeout}",
    )
    await receiver.stop()
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--purchases", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rate", type=float, default=100.0, help="purchases/s in the paced phase")
    p.add_argument("--down-purchases", type=int, default=200)
    p.add_argument("--down-s", type=float, default=30.0)
    p.add_argument("--recover-timeout", type=float, default=400.0)
    args = p.parse_args()
    stack = Stack.fresh(
        "bench-outbound",
        {
            "KOPILKA_HTTP_PORT": str(devservices.free_port()),
            "KOPILKA_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        },
        durable=True,
    )
    try:
        stack.start_services()
        stack.start_worker()
        stack.start_ingest()
        stack.start_dispatch(log_path=None)
        figures = asyncio.run(run(stack, args))
    finally:
        stack.stop()
    print("\n--- summary ---")
    for k, v in figures.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
