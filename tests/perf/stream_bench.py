"""The live event stream under load: S concurrent streams on one ingress, N purchases, every event.

Standalone (`python tests/perf/stream_bench.py --help`) it starts a fresh stack in
.data/bench-streams (Kafka, Postgres, Redis, one worker, the ingress); `make bench` calls
`measure()` on its own stack and adds `rows()` to its table.

S streams (default 200; clients in tests/perf/stream_clients.py) are opened over K shops
(default 20, round robin, so each shop's events go to S/K streams) and each has sent its first
message (subscribed). Then N purchases (default 1,000) are posted at R per second (default 25:
what one worker keeps up with on a busy 2-core machine, so the latency is the pipeline's and
the stream's, not a growing backlog's), round robin over the shops, each by a new customer
(spread over every partition). Every stream must receive every bonus_awarded of its shop exactly
once and nothing of another shop; figures: deliveries missing / duplicated / foreign (and the
awards in Postgres, to tell the pipeline's lag from a loss), latency from the moment a purchase
was POSTed to the moment its event arrived on each stream (p50/p99/max over every delivery),
the spread of one event's arrivals over its streams, and the ingress's CPU (utime + stime from
/proc) over the run and while idle.
Then half as many purchases again, with the ingress restarted (SIGTERM, start again) halfway
while the worker still writes their events: every stream resumes with its Last-Event-ID and
must still receive every event once; figure: seconds until every stream is back.
Measured, never asserted.
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
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer
from benchkit import UNLIMITED, start_stack
from loadgen import percentile, run
from procstat import cpu_seconds
from stream_clients import Run, orders_of

from kopilka.cli.main import create_tenant_json, edge_json
from kopilka.core import topics
from kopilka.core.kafka import assign_whole_topic
from kopilka.core.settings import PROJECT_ROOT, Settings
from kopilka.devstack.stack import Stack

OUT = PROJECT_ROOT / ".data" / "bench" / "stream.json"


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
        for _ in range(10):  # a busy machine may answer 503 (Retry-After): try again
            async with session.post(url, json=body) as resp:
                if resp.status == 202:
                    break
                await asyncio.sleep(1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(f"WARM-{r.shop}" in r.got for r in readers):
            break
        await asyncio.sleep(0.1)
    for r in readers:
        r.got.clear()
    return round(time.perf_counter() - t0, 2)


async def _tail_topic(
    settings: Settings, appended: dict[str, float], direct: list[float], ready: asyncio.Event
) -> None:
    """Every bench purchase's award as it lands in loyalty.events, with the record's timestamp;
    `direct`: how long after it this plain consumer (no ingress in between) had it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_list, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await assign_whole_topic(consumer, topics.EVENTS.name)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        ready.set()
        while True:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    event = orjson.loads(r.value)
                    if event["type"] == "bonus_awarded":
                        appended[event["order_id"]] = r.timestamp / 1000
                        direct.append(time.time() - r.timestamp / 1000)
    finally:
        await consumer.stop()


async def _awarded(settings: Settings, tenant_ids: list[str]) -> int:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE tenant_id = ANY($1::uuid[])"
            " AND type = 'bonus_awarded' AND order_id LIKE 'SB-%'",
            tenant_ids,
        )
    finally:
        await conn.close()


def _ingress(stack: Stack) -> list[int]:
    return [p.proc.pid for p in stack.processes if p.name == "ingest" and p.alive()]


def _ms(values: list[float], q: float) -> float:
    return round(1000 * percentile(values, q), 1)


async def measure(
    stack: Stack,
    *,
    streams: int = 200,
    shops: int = 20,
    purchases: int = 1000,
    rate: float = 25.0,
    idle_s: float = 5.0,
    timeout_s: float = 300.0,
    restart: bool = True,
) -> dict:
    settings = stack.settings()
    f: dict = {"streams": streams, "shops": shops, "rate_per_s": rate}
    tenants = await _shops(settings.database_url.get_secret_value(), shops)
    pids = _ingress(stack)
    cpu0 = cpu_seconds(pids)
    await asyncio.sleep(idle_s)
    f["ingress_idle_cpu_pct_no_streams"] = round(100 * (cpu_seconds(pids) - cpu0) / idle_s, 1)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        run_ = Run(stack, session, tenants, streams)
        t0 = time.perf_counter()
        tasks = run_.open()
        try:
            await asyncio.wait_for(asyncio.gather(*(r.connected.wait() for r in run_.readers)), 60)
            f["connect_all_s"] = round(time.perf_counter() - t0, 2)
            f["warm_up_s"] = await _warm_up(session, run_.base, tenants, run_.readers, timeout_s)
            run_.arrivals.clear()
            await _steady(run_, f, range(purchases), rate, timeout_s, pids)
            cpu0 = cpu_seconds(pids)
            await asyncio.sleep(idle_s)
            f["ingress_idle_cpu_pct"] = round(100 * (cpu_seconds(pids) - cpu0) / idle_s, 1)
            if restart:
                f["restart"] = await _across_restart(
                    run_, range(purchases, purchases + purchases // 2), rate, timeout_s
                )
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return f


async def _steady(run_: Run, f: dict, orders: range, rate: float, timeout_s, pids) -> None:
    """Paced purchases with every stream open: latency, completeness, the ingress's CPU."""
    settings = run_.stack.settings()
    appended: dict[str, float] = {}  # order -> its event's timestamp in loyalty.events
    tail_ready = asyncio.Event()
    direct: list[float] = []
    tail = asyncio.create_task(_tail_topic(settings, appended, direct, tail_ready))
    await asyncio.wait_for(tail_ready.wait(), 60)
    cpu0, client0, t0 = cpu_seconds(pids), time.process_time(), time.perf_counter()
    await run_.post(orders, rate)
    f["posted_s"] = round(time.perf_counter() - t0, 2)
    f["accepted"] = run_.statuses[202]
    f["refused"] = {str(k): v for k, v in run_.statuses.items() if k != 202}
    await run_.wait_complete(timeout_s)
    tail.cancel()
    # a missing delivery of an award that is not in Postgres either is the pipeline's lag
    f["awarded_in_postgres"] = await _awarded(settings, [t["tenant_id"] for t in run_.tenants])
    run_s = time.perf_counter() - t0
    cpu = cpu_seconds(pids) - cpu0
    f["client_cpu_pct"] = round(100 * (time.process_time() - client0) / run_s, 1)
    f["run_s"] = round(run_s, 2)
    f["ingress_cpu_s"] = round(cpu, 2)
    f["ingress_cpu_pct"] = round(100 * cpu / run_s, 1)
    f.update(run_.delivery(orders_of(orders)))
    f["ingress_cpu_ms_per_delivery"] = round(1000 * cpu / max(f["deliveries"], 1), 3)
    arrivals, sent = run_.arrivals, run_.sent
    latencies = [t - sent[o] for o, ts in arrivals.items() if o in sent for t in ts]
    # from the worker's write to loyalty.events (the record's timestamp) to the stream
    after_topic = [t - appended[o] for o, ts in arrivals.items() if o in appended for t in ts]
    if after_topic:
        f["topic_to_stream_p50_ms"] = _ms(after_topic, 50)
        f["topic_to_stream_p99_ms"] = _ms(after_topic, 99)
    if direct:  # the same for a plain consumer in this process: the broker's and Faust's share
        f["topic_to_consumer_p50_ms"], f["topic_to_consumer_p99_ms"] = (
            _ms(direct, 50),
            _ms(direct, 99),
        )
    if latencies:
        f["latency_p50_ms"], f["latency_p99_ms"] = _ms(latencies, 50), _ms(latencies, 99)
        f["latency_max_ms"] = round(1000 * max(latencies), 1)
        # one event's first to last arrival over its shop's streams: the fan-out's own share
        spread = [max(a) - min(a) for a in arrivals.values()]
        f["fan_out_spread_p50_ms"] = _ms(spread, 50)
        f["fan_out_spread_p99_ms"] = _ms(spread, 99)


async def _across_restart(run_: Run, orders: range, rate: float, timeout_s: float) -> dict:
    """Half the purchases, then the ingress restarts (SIGTERM, start again) while the worker
    still emits their events, then the other half: every stream resumes with its last id and
    must still get every event once."""
    half = len(orders) // 2
    first, second = orders[:half], orders[half:]
    statuses = Counter(run_.statuses)
    await run_.post(first, rate)
    before = [r.connections for r in run_.readers]
    t0 = time.perf_counter()
    await asyncio.to_thread(run_.stack.restart, "ingest")
    restarted = time.perf_counter()
    posting = asyncio.create_task(run_.post(second, rate))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(r.connections > n for r, n in zip(run_.readers, before, strict=True)):
            break
        await asyncio.sleep(0.05)
    resumed = time.perf_counter()
    await posting
    await run_.wait_complete(timeout_s)
    return {
        "restart_s": round(restarted - t0, 1),
        "all_resumed_after_s": round(resumed - restarted, 2),
        "resumed": sum(r.connections > n for r, n in zip(run_.readers, before, strict=True)),
        "purchases": len(orders),
        "answers": {str(k): v - statuses[k] for k, v in run_.statuses.items() if v > statuses[k]},
        **run_.delivery(orders_of(orders)),
    }


def _delivered(f: dict) -> str:
    if f["missing"] == 0 and f["duplicates"] == 0 and f["foreign"] == 0:
        return f"all {f['deliveries']:,} deliveries, once each"
    return (
        f"MISSING {f['missing']:,}, duplicated {f['duplicates']:,}, "
        f"foreign {f['foreign']:,} of {f['deliveries_expected']:,}"
    )


def rows(f: dict) -> list[tuple[str, str, str]]:
    """Rows for a figures table (make bench's)."""
    r = f.get("restart")
    restart = []
    if r:
        restart = [
            (
                f"event stream: all {f['streams']} streams resumed after an ingress restart (s)",
                f"{r['all_resumed_after_s']}",
                f"{r['resumed']} resumed with Last-Event-ID; {r['purchases']:,} purchases "
                f"around the restart ({r['restart_s']} s; answers {r['answers']}): "
                f"{_delivered(r)}",
            )
        ]
    return [
        (
            f"event stream: webhook -> event on {f['streams']} streams p50 / p99 (ms)",
            f"{f.get('latency_p50_ms', 'n/a')} / {f.get('latency_p99_ms', 'n/a')}",
            f"{f['accepted']:,} purchases at {f['rate_per_s']:g}/s over {f['shops']} shops; "
            + _delivered(f)
            + f" ({f['awarded_in_postgres']:,} awarded in Postgres)",
        ),
        (
            f"event stream: ingress CPU with {f['streams']} streams (% of a core)",
            f"{f['ingress_cpu_pct']}",
            f"webhooks included; {f['ingress_cpu_ms_per_delivery']} ms per delivery; fan-out "
            f"spread p99 {f.get('fan_out_spread_p99_ms', 'n/a')} ms; "
            f"loyalty.events -> stream p50/p99 {f.get('topic_to_stream_p50_ms', 'n/a')}/"
            f"{f.get('topic_to_stream_p99_ms', 'n/a')} ms (a plain consumer: "
            f"{f.get('topic_to_consumer_p50_ms', 'n/a')}/{f.get('topic_to_consumer_p99_ms', 'n/a')}"
            " ms); "
            f"idle: {f['ingress_idle_cpu_pct_no_streams']} % before the streams, "
            f"{f['ingress_idle_cpu_pct']} % with them open",
        ),
        *restart,
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--shops", type=int, default=20)
    p.add_argument("--purchases", type=int, default=1000)
    p.add_argument("--rate", type=float, default=25.0, help="purchases per second")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for events")
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
