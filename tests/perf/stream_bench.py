"""The live event stream under load: S concurrent streams on one ingress, N purchases, every event.

Standalone (`python tests/perf/stream_bench.py --help`) it starts a fresh stack in
.data/bench-streams (Kafka, Postgres, Redis, one worker, the ingress); `make bench` calls
`measure()` on its own stack and adds `rows()` to its table.

S streams (default 200) are opened over K shops (default 20, round robin, so each shop's events
go to S/K streams) and each has sent its first message (subscribed). Then N purchases (default
2,000) are posted at R per second (default 100), round robin over the shops, each to a new
customer (spread over every partition). Every stream must receive every bonus_awarded of its
shop exactly once and nothing of another shop; figures: deliveries missing / duplicated /
foreign, latency from the moment a purchase was POSTed to the moment its event arrived on each
stream (p50/p99/max over every delivery), and the ingress's CPU (utime + stime from /proc)
over the run and while the open streams sit idle. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
from benchkit import UNLIMITED, start_stack
from loadgen import percentile, run
from procstat import cpu_seconds

from kopilka.cli import create_tenant_json, edge_json
from kopilka.settings import PROJECT_ROOT, Settings
from kopilka.stack import Stack

OUT = PROJECT_ROOT / ".data" / "bench" / "stream.json"


class Stream:
    def __init__(self, shop: int, tenant_id: str) -> None:
        self.shop, self.tenant_id = shop, tenant_id
        self.got: Counter[str] = Counter()
        self.foreign = 0
        self.subscribed = asyncio.Event()

    async def read(
        self, resp: aiohttp.ClientResponse, sent: dict, latencies: list, arrivals: dict
    ) -> None:
        buf = b""
        async for chunk in resp.content.iter_any():
            now = time.perf_counter()
            *blocks, buf = (buf + chunk).split(b"\n\n")
            for block in blocks:
                self.subscribed.set()
                i = block.find(b"\ndata: ")
                if i < 0:
                    continue  # a position or a heartbeat
                event = orjson.loads(block[i + 7 :])
                if event["tenant_id"] != self.tenant_id:
                    self.foreign += 1
                elif event["type"] == "bonus_awarded":
                    order = event["order_id"]
                    self.got[order] += 1
                    if order in sent:
                        latencies.append(now - sent[order])
                        arrivals.setdefault(order, []).append(now)


async def _shops(dsn: str, count: int) -> list[dict]:
    settings = Settings(DATABASE_URL=dsn)
    shops = []
    for i in range(count):
        shop = await create_tenant_json(settings, name=f"Stream bench {i}")
        await edge_json(dsn, shop["tenant_id"], **UNLIMITED)
        shops.append(shop)
    return shops


async def _warm_up(session, base: str, tenants: list[dict], readers, timeout_s: float) -> float:
    """One purchase per shop, until every stream has its shop's: the worker is past its cold
    start (first customers, first rules) before anything is timed."""
    t0 = time.perf_counter()
    for i, shop in enumerate(tenants):
        body = {
            "action": "purchase",
            "payload": {"orderId": f"WARM-{i}", "amount": 1000, "email": f"warm-{i}@bench.example"},
        }
        url = f"{base}/api/webhook/{shop['webhook_secret']}"
        async with session.post(url, json=body) as resp:
            assert resp.status == 202, await resp.text()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(f"WARM-{r.shop}" in r.got for r in readers):
            break
        await asyncio.sleep(0.1)
    for r in readers:
        r.got.clear()
    return round(time.perf_counter() - t0, 2)


def _ingress(stack: Stack) -> list[int]:
    return [p.proc.pid for p in stack.processes if p.name == "ingest" and p.alive()]


async def measure(
    stack: Stack,
    *,
    streams: int = 200,
    shops: int = 20,
    purchases: int = 2000,
    rate: float = 100.0,
    idle_s: float = 5.0,
    timeout_s: float = 120.0,
) -> dict:
    settings = stack.settings()
    base = f"http://{settings.http_host}:{settings.http_port}"
    tenants = await _shops(settings.database_url.get_secret_value(), shops)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    arrivals: dict[str, list[float]] = {}  # order -> when it arrived on each of its streams
    expected: dict[int, set[str]] = {i: set() for i in range(shops)}
    readers = [Stream(i % shops, tenants[i % shops]["tenant_id"]) for i in range(streams)]
    f: dict = {"streams": streams, "shops": shops, "rate_per_s": rate}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=timeout
    ) as session:
        responses = []
        t0 = time.perf_counter()
        for r in readers:
            key = tenants[r.shop]["api_key"]
            resp = await session.get(
                f"{base}/api/v1/events/stream", headers={"Authorization": f"Bearer {key}"}
            )
            assert resp.status == 200, await resp.text()
            responses.append(resp)
        tasks = [
            asyncio.create_task(r.read(resp, sent, latencies, arrivals))
            for r, resp in zip(readers, responses, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.subscribed.wait() for r in readers)), 60)
        f["connect_all_s"] = round(time.perf_counter() - t0, 2)

        f["warm_up_s"] = await _warm_up(session, base, tenants, readers, timeout_s)
        latencies.clear()
        arrivals.clear()
        pids = _ingress(stack)
        cpu0, client0, t0 = cpu_seconds(pids), time.process_time(), time.perf_counter()
        statuses: Counter[int] = Counter()

        async def post(i: int) -> None:
            shop, order = i % shops, f"SB-{i}"
            body = {
                "action": "purchase",
                "payload": {"orderId": order, "amount": 1000, "email": f"sb-{i}@bench.example"},
            }
            sent[order] = time.perf_counter()
            url = f"{base}/api/webhook/{tenants[shop]['webhook_secret']}"
            async with session.post(url, json=body) as resp:
                statuses[resp.status] += 1
                if resp.status == 202:
                    expected[shop].add(order)
                else:
                    sent.pop(order, None)

        posts = []
        for i in range(purchases):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(post(i)))
        await asyncio.gather(*posts)
        f["posted_s"] = round(time.perf_counter() - t0, 2)
        f["accepted"] = statuses[202]
        f["refused"] = {str(k): v for k, v in statuses.items() if k != 202}

        def complete() -> bool:
            return all(expected[r.shop] <= r.got.keys() for r in readers)

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if complete():
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # anything extra (a duplicate, a stray) would arrive now
        run_s = time.perf_counter() - t0
        cpu = cpu_seconds(pids) - cpu0
        f["client_cpu_pct"] = round(100 * (time.process_time() - client0) / run_s, 1)
        f["run_s"] = round(run_s, 2)
        f["ingress_cpu_s"] = round(cpu, 2)
        f["ingress_cpu_pct"] = round(100 * cpu / run_s, 1)
        wanted = sum(len(expected[r.shop]) for r in readers)
        f["deliveries_expected"] = wanted
        f["deliveries"] = sum(sum(r.got[o] for o in expected[r.shop]) for r in readers)
        f["missing"] = sum(len(expected[r.shop] - r.got.keys()) for r in readers)
        f["duplicates"] = sum(n - 1 for r in readers for n in r.got.values() if n > 1)
        f["foreign"] = sum(r.foreign for r in readers)
        f["streams_complete"] = sum(expected[r.shop] <= r.got.keys() for r in readers)
        f["ingress_cpu_ms_per_delivery"] = round(1000 * cpu / max(f["deliveries"], 1), 3)
        if latencies:
            f["latency_p50_ms"] = round(1000 * percentile(latencies, 50), 1)
            f["latency_p99_ms"] = round(1000 * percentile(latencies, 99), 1)
            f["latency_max_ms"] = round(1000 * max(latencies), 1)
            # one event's first to last arrival over its shop's streams: the fan-out's own share
            spread = [max(a) - min(a) for a in arrivals.values()]
            f["fan_out_spread_p50_ms"] = round(1000 * percentile(spread, 50), 1)
            f["fan_out_spread_p99_ms"] = round(1000 * percentile(spread, 99), 1)

        cpu0 = cpu_seconds(pids)
        await asyncio.sleep(idle_s)
        f["ingress_idle_cpu_pct"] = round(100 * (cpu_seconds(pids) - cpu0) / idle_s, 1)
        f["streams_open_at_end"] = sum(not t.done() for t in tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for resp in responses:
            resp.close()
    return f


def rows(f: dict) -> list[tuple[str, str, str]]:
    """Rows for a figures table (make bench's)."""
    ok = f["missing"] == 0 and f["duplicates"] == 0 and f["foreign"] == 0
    return [
        (
            f"event stream: webhook -> event on {f['streams']} streams p50 / p99 (ms)",
            f"{f.get('latency_p50_ms', 'n/a')} / {f.get('latency_p99_ms', 'n/a')}",
            f"{f['accepted']:,} purchases at {f['rate_per_s']:g}/s over {f['shops']} shops; "
            + (
                f"all {f['deliveries']:,} deliveries, once each"
                if ok
                else f"MISSING {f['missing']:,}, duplicated {f['duplicates']:,}, "
                f"foreign {f['foreign']:,} of {f['deliveries_expected']:,}"
            ),
        ),
        (
            f"event stream: ingress CPU with {f['streams']} streams (% of a core)",
            f"{f['ingress_cpu_pct']}",
            f"webhooks included; {f['ingress_cpu_ms_per_delivery']} ms per delivery; fan-out "
            f"spread p99 {f.get('fan_out_spread_p99_ms', 'n/a')} ms; "
            f"idle with the streams open {f['ingress_idle_cpu_pct']} %",
        ),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--shops", type=int, default=20)
    p.add_argument("--purchases", type=int, default=2000)
    p.add_argument("--rate", type=float, default=100.0, help="purchases per second")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for events")
    p.add_argument("--json", type=Path, default=OUT)
    args = p.parse_args()
    stack = start_stack("bench-streams")
    try:
        f = run(
            measure(
                stack,
                streams=args.streams,
                shops=args.shops,
                purchases=args.purchases,
                rate=args.rate,
                timeout_s=args.timeout,
            )
        )
    finally:
        stack.stop()
    f["loadavg"] = os.getloadavg()
    for figure, value, note in rows(f):
        print(f"{figure:<62} {value:>14}  {note}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(f, indent=2))
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
