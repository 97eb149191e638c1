"""Worker benchmarks, as functions for tests/perf/bench.py: end to end with the workers the stack
runs, catching up a backlog, a pre-load of orders, and a restart with the state they leave.

Every figure is measured (wall clock, /proc CPU and RSS, rows in Postgres), never asserted.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import asyncpg
from benchkit import WORKER_READY, Shop, pids, stop, workers
from loadgen import hammer, purchase_factory
from procstat import cpu_seconds, rss_mb

from kopilka.devstack.stack import Stack

Figures = dict


def ingress_pids(stack: Stack) -> list[int]:
    return [p.proc.pid for p in stack.processes if p.name == "ingest" and p.alive()]


async def end_to_end(
    stack: Stack,
    shop: Shop,
    base: tuple[str, int],
    *,
    prefix: str,
    count: int,
    concurrency: int,
    timeout_s: float,
) -> Figures:
    """`count` purchases as fast as `concurrency` connections go, timed until every award is in
    Postgres; the CPU the workers (and the ingress) used meanwhile, per purchase."""
    procs = workers(stack)
    conn = await asyncpg.connect(shop.dsn)
    try:
        before = await shop.awards(conn)
    finally:
        await conn.close()
    cpu_w0 = [cpu_seconds([pid]) for pid in pids(procs)]
    cpu_i0 = cpu_seconds(ingress_pids(stack))
    sent = await hammer(
        *base,
        shop.path,
        purchase_factory(prefix),
        concurrency=concurrency,
        count=count,
        keep_latencies=False,
    )
    accepted = sent.count("202")
    awarded, done = await shop.wait_for_awards(before + accepted, timeout_s)
    cpu_w = [cpu_seconds([pid]) - c0 for pid, c0 in zip(pids(procs), cpu_w0, strict=True)]
    cpu_i = cpu_seconds(ingress_pids(stack)) - cpu_i0
    seconds = done - sent.started
    complete = awarded - before >= accepted
    return {
        "workers": len(procs),
        "purchases": count,
        "accepted": accepted,
        "non_202": {k: v for k, v in sent.statuses.items() if k != "202"},
        "sent_s": round(sent.elapsed, 2),
        "e2e_s": round(seconds, 2),
        "all_awarded": complete,
        "awarded": awarded - before,
        "e2e_per_s": round(accepted / seconds, 1) if complete else None,
        "worker_cpu_ms_per_purchase": round(1000 * sum(cpu_w) / max(accepted, 1), 3),
        "worker_cpu_share_pct": [round(100 * c / max(sum(cpu_w), 1e-9)) for c in cpu_w],
        "ingress_cpu_ms_per_purchase": round(1000 * cpu_i / max(accepted, 1), 3),
    }


async def catch_up(stack: Stack, shop: Shop, backlog: int, started: float, timeout_s) -> Figures:
    """The worker(s) started at `started` with `backlog` awards waiting in Kafka: how fast they
    get through it, with no new load competing for the CPU."""
    cpu0 = cpu_seconds(pids(workers(stack)))
    awarded, done = await shop.wait_for_awards(backlog, timeout_s)
    return {
        "backlog": backlog,
        "awarded": awarded,
        "catch_up_s": round(done - started, 2),
        "catch_up_per_s": round(awarded / (done - started), 1) if awarded >= backlog else None,
        "worker_cpu_ms_per_purchase": round(
            1000 * (cpu_seconds(pids(workers(stack))) - cpu0) / max(awarded, 1), 3
        ),
    }


async def preload(shop: Shop, base: tuple[str, int], orders: int, timeout_s: float) -> Figures:
    """`orders` purchases as batch_purchase requests of up to 10,000 items, until all awarded."""
    url = f"http://{base[0]}:{base[1]}{shop.path}"
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for first in range(0, orders, 10_000):
            items = [
                {"email": f"p{i % 50_000}@bench.example.com", "amount": 500, "orderId": f"L{i}"}
                for i in range(first, min(orders, first + 10_000))
            ]
            body = {"action": "batch_purchase", "payload": {"purchases": items}}
            async with session.post(url, json=body) as resp:
                if resp.status != 202:
                    raise RuntimeError(f"pre-load batch answered {resp.status}")
    awarded, done = await shop.wait_for_awards(orders, timeout_s, poll_s=0.5)
    return {"orders": orders, "awarded": awarded, "preload_s": round(done - started, 1)}


async def orders_in_state(dsn: str) -> int:
    """Orders the ledger has seen, every shop: what the worker's per-order state holds."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT tenant_id, order_id FROM ledger_entries"
            " WHERE order_id IS NOT NULL) o"
        )
    finally:
        await conn.close()


async def probe(
    shop: Shop, base: tuple[str, int], order_id: str, timeout_s: float, watch=None
) -> float | None:
    """One purchase of a customer the bench already has; the perf_counter when its award was in
    Postgres (None after `timeout_s`). The worker must have restored that customer's state to
    award it. `watch()` runs on every poll (the restart notes when the worker logs "Ready")."""
    started = time.perf_counter()
    body = {
        "action": "purchase",
        "payload": {"email": "buyer1@bench.example.com", "amount": 100, "orderId": order_id},
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://{base[0]}:{base[1]}{shop.path}", json=body) as resp,
    ):
        if resp.status != 202:
            raise RuntimeError(f"probe answered {resp.status}: {await resp.text()}")
    conn = await asyncpg.connect(shop.dsn)
    try:
        while time.perf_counter() - started < timeout_s:
            if watch:
                watch()
            if await conn.fetchval(
                "SELECT 1 FROM ledger_entries WHERE tenant_id = $1 AND order_id = $2"
                " AND type = 'bonus_awarded'",
                uuid.UUID(shop.tenant_id),
                order_id,
            ):
                return time.perf_counter()
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return None


async def restart_to_processing(
    stack: Stack, shop: Shop, base: tuple[str, int], timeout_s: float
) -> Figures:
    """Stop the only worker (SIGTERM, as a deploy does), start it again (same table folder)
    and at once send a purchase of a known customer: seconds from the new process's start until
    that award is in Postgres, and until it logged "Ready"."""
    (old,) = workers(stack)
    t0 = time.perf_counter()
    stop(stack, old)
    stop_s = time.perf_counter() - t0
    spawned = time.perf_counter()
    new = stack.start_worker(wait_ready=False)
    ready: list[float] = []

    def watch() -> None:
        if not ready:
            with open(new.log_path, "rb") as f:
                f.seek(new.log_start)
                if WORKER_READY in f.read():
                    ready.append(time.perf_counter() - spawned)

    awarded = await probe(shop, base, f"RESTART-{uuid.uuid4().hex[:8]}", timeout_s, watch)
    return {
        "stop_s": round(stop_s, 2),
        "ready_s": round(ready[0], 2) if ready else None,
        "awarded_s": round(awarded - spawned, 2) if awarded else None,
    }


def worker_rss(stack: Stack) -> tuple[float, float]:
    """(RSS now, peak RSS) of the worker processes, MiB."""
    procs = pids(workers(stack))
    return round(rss_mb(procs), 1), round(rss_mb(procs, "VmHWM"), 1)
