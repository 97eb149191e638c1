"""The ingress against a bare aiohttp POST handler, under the same wrk-like load (loadgen.py).

Functions for tests/perf/bench.py. Each side gets a warm-up, then standard purchases from
`concurrency` keep-alive connections; the server's CPU (utime + stime from /proc, its whole
process group) over the measured part is divided by the requests it accepted.

In `make bench` the two sides take turns (`bare_vs_ingress`): this machine's load changes from
one minute to the next (the same ingress measured 0.128 and 0.184 ms a request in two runs an
hour apart), and turns put both under much the same load. A side's req/s and latencies are over
all its turns; the ratio and the CPU per request are the medians of the turns'.
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import median

from benchkit import Shop
from loadgen import Result, hammer, percentile, purchase_factory
from procstat import cpu_seconds

from kopilka.devstack import devservices
from kopilka.devstack.stack import Stack

BARE_SERVER = Path(__file__).with_name("bare_server.py")
WARMUP_S = 2.0
TURNS = 3


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


async def _timed(
    host: str, port: int, path: str, leaders: list[int], prefix: str, seconds, concurrency
) -> tuple[Result, float]:
    """`seconds` of purchases; (the result, the server's CPU seconds meanwhile)."""
    cpu0 = cpu_seconds(leaders)
    result = await hammer(
        host, port, path, purchase_factory(prefix), concurrency=concurrency, seconds=seconds
    )
    return result, cpu_seconds(leaders) - cpu0


async def measure(
    host: str, port: int, path: str, leaders: list[int], prefix: str, seconds, concurrency
) -> tuple[dict, int]:
    """Warm up, then measure; (figures, every 202 including the warm-up's)."""
    warm, _ = await _timed(host, port, path, leaders, f"{prefix}W", WARMUP_S, concurrency)
    result, cpu = await _timed(host, port, path, leaders, prefix, seconds, concurrency)
    return _figures(result, cpu), warm.count("202") + result.count("202")


def start_server(
    stack: Stack,
    name: str,
    argv: list[str],
    port: int,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    start_s: float = 30,
) -> tuple[devservices.ManagedProcess, int]:
    """A server measured against the stack, as one more process of it (so stack.stop() ends it
    too), logging to logs/<name>.log; returned once it listens on `port` (within `start_s`)."""
    log_path = stack.data_dir / "logs" / f"{name}.log"
    proc = devservices.spawn(
        name, argv, log_path, env={**stack.child_env(), **(env or {})}, cwd=cwd
    )
    stack.processes.append(proc)
    devservices.wait_until(lambda: devservices.port_open(port), proc, start_s, name)
    return proc, port


def start_bare(stack: Stack) -> tuple[devservices.ManagedProcess, int]:
    """The bare server on asyncio's loop."""
    port = devservices.free_port()
    return start_server(stack, "bare-aiohttp", [sys.executable, str(BARE_SERVER), str(port)], port)


async def bare_vs_ingress(
    stack: Stack, bare_port: int, bare_pid: int, shop: Shop, seconds: float, concurrency: int
) -> tuple[dict, dict, int]:
    """(bare figures, ingress figures, webhooks the ingress accepted in all): after a warm-up
    each, TURNS turns of `seconds / TURNS` each, bare then ingress."""
    settings = stack.settings()
    ingress = [p.proc.pid for p in stack.processes if p.name == "ingest" and p.alive()]
    sides = {
        "bare": ("127.0.0.1", bare_port, [bare_pid], "BARE"),
        "ingress": (settings.http_host, settings.http_port, ingress, "IN"),
    }
    results: dict[str, list[tuple[Result, float]]] = {name: [] for name in sides}
    accepted = 0
    for turn in range(-1, TURNS):  # turn -1: the warm-up
        for name, (host, port, leaders, prefix) in sides.items():
            length = WARMUP_S if turn < 0 else seconds / TURNS
            timed = await _timed(
                host, port, shop.path, leaders, f"{prefix}{turn}", length, concurrency
            )
            accepted += timed[0].count("202") if name == "ingress" else 0
            if turn >= 0:
                results[name].append(timed)
    bare, kopilka = (_over_turns(results[name]) for name in sides)
    ratios = [
        100 * i["rps"] / b["rps"]
        for b, i in zip(_each_turn(results["bare"]), _each_turn(results["ingress"]), strict=True)
    ]
    kopilka["pct_of_bare"] = round(median(ratios), 1)
    kopilka["pct_of_bare_turns"] = [round(r, 1) for r in ratios]
    return bare, kopilka, accepted


def _over_turns(turns: list[tuple[Result, float]]) -> dict:
    """One side's figures over all its turns; CPU per request the median of the turns'."""
    total = Result()
    for result, _ in turns:
        total.requests += result.requests
        total.statuses.update(result.statuses)
        total.latencies += result.latencies
        total.elapsed += result.elapsed
        total.client_cpu_s += result.client_cpu_s
    figures = _figures(total, sum(cpu for _, cpu in turns))
    per_turn = [turn["server_cpu_ms_per_req"] for turn in _each_turn(turns)]
    figures["server_cpu_ms_per_req"] = median(per_turn)
    figures["server_cpu_ms_per_req_turns"] = per_turn
    return figures


def _each_turn(turns: list[tuple[Result, float]]) -> list[dict]:
    return [_figures(result, cpu) for result, cpu in turns]
