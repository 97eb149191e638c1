"""The ingress against a bare aiohttp POST handler, under the same wrk-like load (loadgen.py).

Functions for tests/perf/bench.py. Each side gets a warm-up, then `seconds` of standard purchases
from `concurrency` keep-alive connections; the server's CPU (utime + stime from /proc, its whole
process group) over the measured part is divided by the requests it accepted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchkit import Shop
from loadgen import Result, hammer, percentile, purchase_factory
from procstat import cpu_seconds

from kopilka.devstack import devservices
from kopilka.devstack.stack import Stack

BARE_SERVER = Path(__file__).with_name("bare_server.py")
WARMUP_S = 2.0


def _figures(result: Result, server_cpu_s: float) -> dict:
    accepted = result.count("202")
    ms = [x * 1000 for x in result.latencies] or [0.0]
    return {
        "seconds": round(result.elapsed, 2),
        "requests": result.requests,
        "accepted": accepted,
        "non_202": {k: v for k, v in result.statuses.items() if k != "202"},
        "rps": round(accepted / result.elapsed, 1),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "server_cpu_ms_per_req": round(1000 * server_cpu_s / max(accepted, 1), 3),
        "server_cpu_pct": round(100 * server_cpu_s / result.elapsed),
        "client_cpu_pct": round(100 * result.client_cpu_s / result.elapsed),
    }


async def measure(
    host: str, port: int, path: str, leaders: list[int], prefix: str, seconds, concurrency
) -> tuple[dict, int]:
    """Warm up, then measure; (figures, every 202 including the warm-up's)."""
    warm = await hammer(
        host, port, path, purchase_factory(f"{prefix}W"), concurrency=concurrency, seconds=WARMUP_S
    )
    cpu0 = cpu_seconds(leaders)
    result = await hammer(
        host, port, path, purchase_factory(prefix), concurrency=concurrency, seconds=seconds
    )
    return _figures(result, cpu_seconds(leaders) - cpu0), warm.count("202") + result.count("202")


def start_bare(stack: Stack) -> tuple[devservices.ManagedProcess, int]:
    """The bare server as one more process of the stack (so stack.stop() ends it too)."""
    port = devservices.free_port()
    proc = devservices.spawn(
        "bare-aiohttp",
        [sys.executable, str(BARE_SERVER), str(port)],
        stack.data_dir / "logs" / "bare-aiohttp.log",
        env=stack.child_env(),
    )
    stack.processes.append(proc)
    devservices.wait_until(lambda: devservices.port_open(port), proc, 30, "the bare server")
    return proc, port


async def bare_vs_ingress(
    stack: Stack, bare_port: int, bare_pid: int, shop: Shop, seconds: float, concurrency: int
) -> tuple[dict, dict, int]:
    """(bare figures, ingress figures, webhooks the ingress accepted in all)."""
    settings = stack.settings()
    ingress = [p.proc.pid for p in stack.processes if p.name == "ingest" and p.alive()]
    bare, _ = await measure(
        "127.0.0.1", bare_port, shop.path, [bare_pid], "BARE", seconds, concurrency
    )
    kopilka, accepted = await measure(
        settings.http_host, settings.http_port, shop.path, ingress, "IN", seconds, concurrency
    )
    kopilka["pct_of_bare"] = round(100 * kopilka["rps"] / bare["rps"], 1) if bare["rps"] else None
    return bare, kopilka, accepted
