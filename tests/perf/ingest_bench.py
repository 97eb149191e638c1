"""Ingest benchmark: webhook latency and throughput, then how long the pipeline takes to catch up.

    make bench-ingest                  # a fresh stack in .data/bench-ingest, stopped afterwards
    make bench-ingest ARGS="--requests 20000 --concurrency 128 --json bench.json"
    make bench-ingest ARGS="--edge"   # the same, twice in one run: baseline, then the hardened edge
    make bench-ingest ARGS="--vs-bare --procs 1,2"   # issue 9's ingress figures only (below)
    make bench-ingest ARGS="--stages --rounds 3 --seconds 8"   # what each part of it costs
    .venv/bin/python tests/perf/ingest_bench.py --base-url http://127.0.0.1:8080 \\
        --dsn postgresql://kopilka@127.0.0.1:5433/kopilka   # against a stack already running

Phases: 200 warm-up webhooks (not measured); N sequential standard purchases over one keep-alive
connection; M webhooks (80% standard JSON, 20% Tilda form orders, 2,000 distinct customers) from
C concurrent connections; then Postgres is polled until every accepted order is in the ledger.
Timings are printed, never asserted. Loopback only; bounded in count and time.

--edge measures the hardened edge against the baseline in the same run, on the same Kafka and
Postgres: "baseline" posts unsigned webhooks to a second ingress process started without
REDIS_URL (in-process rate limiter, signatures off: the skeleton's request path plus one
in-memory bucket check); "edge" posts Standard-Webhooks-signed webhooks to the stack's ingress,
whose shop requires signatures and whose rate limit is checked in Redis (limit set high enough
never to refuse, so every request pays for the check). Each profile has its own shop.

--vs-bare runs tests/perf/ingress_vs_bare.py instead: bare aiohttp against the ingress with
--procs processes (issue 9's ingress figures). --stages runs tests/perf/ingress_stages.py: the
ingress with one part taken out at a time (Redis rate limit, parsing, Kafka, order routes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
from benchkit import UNLIMITED, start_stack
from ingress_stages import render, stages
from ingress_vs_bare import parse_procs, vs_bare
from loadgen import percentile
from procstat import cpu_seconds

from ingest.signatures import sign_standard
from kopilka.cli.main import create_tenant_json, edge_json
from kopilka.core.settings import Settings
from kopilka.devstack import devservices
from kopilka.devstack.stack import Stack

WARMUP = 200
CUSTOMERS = 2_000
TILDA_SHARE = 0.2
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"

Body = tuple[bytes, str]  # (body, content type)
Figures = dict[str, Any]


def standard(order_id: str, customer: int) -> Body:
    payload = {
        "email": f"buyer{customer}@bench.example.com",
        "amount": 1234.5,
        "orderId": order_id,
        "description": "bench",
    }
    return json.dumps({"action": "purchase", "payload": payload}).encode(), JSON_TYPE


def tilda(order_id: str, customer: int, amount: int) -> Body:
    form = {
        "Name": f"Покупатель {customer}",
        "Phone": f"8 (999) 000-{customer // 100:02d}-{customer % 100:02d}",  # customer < 10,000
        "Email": f"buyer{customer}@bench.example.com",
        "payment[orderid]": order_id,
        "payment[amount]": str(amount),
        "formid": "form-bench",
    }
    return urlencode(form).encode(), FORM_TYPE


Headers = dict[str, str]


class Bench:
    def __init__(self, webhook_url: str, signing_secret: str | None = None) -> None:
        self.url = webhook_url
        self.signing_secret = signing_secret  # set: every request is Standard-Webhooks signed
        self.accepted = 0  # 202s; every body carries a fresh order id, so = awards expected
        self.last_202 = 0.0
        self.other: Counter[str] = Counter()
        self.rng = random.Random(42)
        self._order = 0

    def next_body(self, mix: bool) -> tuple[bytes, Headers]:
        self._order += 1
        order_id, customer = f"BENCH-{self._order:07d}", self.rng.randrange(CUSTOMERS)
        if mix and self.rng.random() < TILDA_SHARE:
            body = tilda(order_id, customer, self.rng.randrange(500, 50_000, 10))
        else:
            body = standard(order_id, customer)
        headers = {"Content-Type": body[1]}
        if self.signing_secret:
            msg_id, now = f"msg_{order_id}", int(time.time())
            headers.update(
                {
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(now),
                    "webhook-signature": sign_standard(self.signing_secret, msg_id, now, body[0]),
                }
            )
        return body[0], headers

    async def post(self, session: aiohttp.ClientSession, request: tuple[bytes, Headers]) -> float:
        started = time.perf_counter()
        try:
            async with session.post(self.url, data=request[0], headers=request[1]) as r:
                await r.read()
                status = str(r.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__
        done = time.perf_counter()
        if status == "202":
            self.accepted += 1
            self.last_202 = max(self.last_202, done)
        else:
            self.other[status] += 1
        return done - started

    async def sequential(self, count: int, measured: bool, figures: Figures) -> None:
        errors_before = sum(self.other.values())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            started = time.perf_counter()
            latencies = [await self.post(session, self.next_body(mix=False)) for _ in range(count)]
            elapsed = time.perf_counter() - started
        if measured:
            ms = [x * 1000 for x in latencies]
            figures.update(
                seq_requests=count,
                seq_p50_ms=percentile(ms, 50),
                seq_p90_ms=percentile(ms, 90),
                seq_p99_ms=percentile(ms, 99),
                seq_max_ms=max(ms),
                seq_rps=count / elapsed,
                seq_non_202=sum(self.other.values()) - errors_before,
            )

    async def throughput(self, count: int, concurrency: int, figures: Figures) -> None:
        errors_before = sum(self.other.values())
        queue: asyncio.Queue[tuple[bytes, Headers]] = asyncio.Queue()
        for _ in range(count):
            queue.put_nowait(self.next_body(mix=True))
        latencies: list[float] = []

        async def worker(session: aiohttp.ClientSession) -> None:
            while not queue.empty():
                latencies.append(await self.post(session, queue.get_nowait()))

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.perf_counter()
            await asyncio.gather(*(worker(session) for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        ms = [x * 1000 for x in latencies]
        figures.update(
            load_requests=count,
            load_concurrency=concurrency,
            load_seconds=elapsed,
            load_rps=count / elapsed,
            load_p50_ms=percentile(ms, 50),
            load_p99_ms=percentile(ms, 99),
            load_non_202=sum(self.other.values()) - errors_before,
        )
        figures["_load_started"] = started

    async def drain(self, dsn: str, tenant_id: str, timeout_s: float, figures: Figures) -> None:
        conn = await asyncpg.connect(dsn)
        deadline, count = time.perf_counter() + timeout_s, -1
        try:
            while time.perf_counter() < deadline:
                count = await conn.fetchval(
                    "SELECT count(*) FROM ledger_entries WHERE tenant_id = $1", uuid.UUID(tenant_id)
                )
                if count >= self.accepted:
                    break
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
        now = time.perf_counter()
        figures.update(awards_expected=self.accepted, awards_in_ledger=count)
        if count >= self.accepted:
            figures["drain_s"] = now - self.last_202
            load_accepted = figures["load_requests"] - figures["load_non_202"]
            figures["e2e_webhooks_per_s"] = load_accepted / (now - figures["_load_started"])
        else:
            figures["drain_s"] = f"TIMEOUT after {timeout_s:.0f}s"


async def run(
    base_url: str,
    dsn: str,
    args: argparse.Namespace,
    figures: Figures,
    *,
    signed: bool = False,
    ingest_pid: int | None = None,
) -> None:
    tenant = await create_tenant_json(Settings(DATABASE_URL=dsn), name="Bench shop")
    mode = {"signature_mode": "required"} if signed else {}
    await edge_json(dsn, tenant["tenant_id"], **UNLIMITED, **mode)
    bench = Bench(
        f"{base_url.rstrip('/')}/api/webhook/{tenant['webhook_secret']}",
        tenant["signing_secret"] if signed else None,
    )
    print(f"warm-up: {WARMUP} requests ...", flush=True)
    await bench.sequential(WARMUP, measured=False, figures=figures)
    cpu_before = cpu_seconds([ingest_pid]) if ingest_pid else None
    print(f"sequential: {args.sequential} requests over one connection ...", flush=True)
    await bench.sequential(args.sequential, measured=True, figures=figures)
    print(f"throughput: {args.requests} requests, {args.concurrency} connections ...", flush=True)
    await bench.throughput(args.requests, args.concurrency, figures)
    if cpu_before is not None:
        # the ingress's own CPU per request: steadier than rates on a shared machine
        used = cpu_seconds([ingest_pid]) - cpu_before
        figures["ingest_cpu_ms_per_req"] = 1000 * used / (args.sequential + args.requests)
    print(f"drain: waiting for {bench.accepted} awards in ledger_entries ...", flush=True)
    await bench.drain(dsn, tenant["tenant_id"], args.drain_timeout, figures)
    if bench.other:
        figures["non_202_by_status"] = dict(bench.other)
    figures.pop("_load_started", None)


def peak_rss_mb(stack: Stack, figures: Figures) -> None:
    for proc in stack.processes:
        if proc.name in ("ingest", "worker") and proc.alive():
            status = Path(f"/proc/{proc.proc.pid}/status").read_text()
            kb = next(int(line.split()[1]) for line in status.splitlines() if "VmHWM" in line)
            figures[f"{proc.log_path.stem}_peak_rss_mb"] = round(kb / 1024, 1)


def _shown(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_comparison(figures: Figures) -> None:
    columns = sorted(k for k, v in figures.items() if isinstance(v, dict))
    print(f"{'figure':<22}" + "".join(f"{c:>14}" for c in columns))
    for name in figures[columns[0]]:
        cells = "".join(f"{_shown(figures[c].get(name, '-')):>14}" for c in columns)
        print(f"{name:<22}{cells}")
    for name, value in figures.items():
        if name not in columns:
            print(f"{name}: {_shown(value)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sequential", type=int, default=1000, help="sequential requests measured")
    p.add_argument("--requests", type=int, default=10_000, help="requests in the throughput phase")
    p.add_argument("--concurrency", type=int, default=64, help="connections in that phase")
    p.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for awards")
    p.add_argument("--base-url", help="use a running ingress (with --dsn) instead of a new stack")
    p.add_argument("--dsn", help="its Postgres URL")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument(
        "--edge",
        action="store_true",
        help="measure baseline and hardened edge (signatures + Redis rate limit) in one run",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --edge: repeat, alternating which goes first; with --stages: rounds",
    )
    p.add_argument("--vs-bare", action="store_true", help="bare aiohttp vs the ingress (issue 9)")
    p.add_argument("--procs", type=parse_procs, default=[1], help="with --vs-bare: e.g. 1,2")
    p.add_argument(
        "--seconds",
        type=float,
        default=15.0,
        help="with --vs-bare: load per side; with --stages: per variant",
    )
    p.add_argument(
        "--stages",
        action="store_true",
        help="the ingress with one part taken out at a time: what each part costs (issue 9)",
    )
    args = p.parse_args()
    if args.stages:
        table = stages(args)
        print("\n" + render(table) + "\n\n" + json.dumps(table, indent=2))
        if args.json:
            args.json.write_text(json.dumps(table, indent=2))
        return 0
    if args.vs_bare:
        figures = vs_bare(args)
        print("\n--- summary ---\n" + json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return 0
    if bool(args.base_url) != bool(args.dsn):
        p.error("--base-url and --dsn go together")
    if args.edge and args.base_url:
        p.error("--edge starts its own stack (it needs a second ingress without Redis)")
    if min(args.sequential, args.requests, args.concurrency) < 1:
        p.error("--sequential, --requests and --concurrency must be at least 1")

    def on_sigterm(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    figures: Figures = {}
    stack: Stack | None = None
    try:
        if args.base_url:
            base_url, dsn = args.base_url, args.dsn
        else:
            stack = start_stack("bench-ingest")
            settings = stack.settings()
            base_url = f"http://{settings.http_host}:{settings.http_port}"
            dsn = settings.database_url.get_secret_value()
        if args.edge:
            baseline_port = devservices.free_port()
            edge_ingest = stack.process("ingest")
            baseline_ingest = stack.start_ingest(
                stack.data_dir / "logs" / "ingest-baseline.log",
                env={"KOPILKA_HTTP_PORT": str(baseline_port), "REDIS_URL": ""},
            )
            profiles = [
                ("baseline", f"http://127.0.0.1:{baseline_port}", False, baseline_ingest),
                ("edge", base_url, True, edge_ingest),
            ]
            for round_no in range(1, args.rounds + 1):
                # alternate the order, so neither profile always runs on the warmer stack
                for name, url, signed, proc in profiles if round_no % 2 else profiles[::-1]:
                    label = f"{name}#{round_no}" if args.rounds > 1 else name
                    print(f"\n=== {label} ===", flush=True)
                    profile: Figures = {}
                    asyncio.run(
                        run(url, dsn, args, profile, signed=signed, ingest_pid=proc.proc.pid)
                    )
                    figures[label] = profile
        else:
            asyncio.run(run(base_url, dsn, args, figures))
        if stack:
            peak_rss_mb(stack, figures)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if stack:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan it
            print("stopping the stack ...", file=sys.stderr, flush=True)
            stack.stop()
    print("\n--- summary ---")
    if args.edge:
        print_comparison(figures)
    else:
        for name, value in figures.items():
            print(f"{name}: {_shown(value)}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
