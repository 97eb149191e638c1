"""Issue 9's ingress figures alone: bare aiohttp against the ingress with N processes.

    make bench-ingest ARGS="--vs-bare --procs 1,2 --seconds 15"

The ingress part of `make bench` (tests/perf/http_bench.py) on its own stack without a worker:
the bare aiohttp handler on asyncio's loop, then on uvloop (as the ingress runs), then the
ingress started with each count in --procs (KOPILKA_INGRESS_PROCS, one port), one after the
other under the same wrk-like load (64 connections, standard purchases). Prints req/s, the
ratio to each bare figure and the server's CPU ms per accepted webhook (utime + stime of its
process group from /proc: the steady figure on a shared machine). Redis rate limit as deployed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import http_bench
from benchkit import new_shop, start_stack
from loadgen import run as run_fast
from procstat import cpu_seconds, rss_mb

from kopilka.devstack import devservices
from kopilka.devstack.stack import Stack

Figures = dict
IDLE_S = 6.0


_UVLOOP_BARE = (
    "import asyncio, runpy, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy());"
    " sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _start_bare(stack: Stack, uvloop: bool) -> tuple[devservices.ManagedProcess, int]:
    """The bare server as one more process of the stack, on asyncio's loop or on uvloop."""
    if not uvloop:
        return http_bench.start_bare(stack)
    port = devservices.free_port()
    cmd = [sys.executable, "-c", _UVLOOP_BARE, str(http_bench.BARE_SERVER), str(port)]
    return http_bench.start_server(stack, "bare-uvloop", cmd, port)


def vs_bare(args: argparse.Namespace) -> Figures:
    """Bare aiohttp (asyncio's loop, then uvloop, as the ingress runs), then the ingress with
    each process count in --procs, on one stack, one after the other under the same load."""
    figures: Figures = {"loadavg_start": list(os.getloadavg())}
    stack = start_stack("bench-ingress", worker=False, ingest=False)
    try:
        dsn = stack.settings().database_url.get_secret_value()
        shop = run_fast(new_shop(dsn, "Ingress bench"))
        for name, uvloop in (("bare", False), ("bare_uvloop", True)):
            bare, port = _start_bare(stack, uvloop)
            figures[name], _ = run_fast(
                http_bench.measure(
                    "127.0.0.1",
                    port,
                    shop.path,
                    [bare.proc.pid],
                    name,
                    args.seconds,
                    args.concurrency,
                )
            )
            bare.stop()
            stack.processes.remove(bare)
        for procs in args.procs:
            port = devservices.free_port()
            env = {"KOPILKA_HTTP_PORT": str(port), "KOPILKA_INGRESS_PROCS": str(procs)}
            log_path = stack.data_dir / "logs" / f"ingest-{procs}.log"
            ingest = stack.start_ingest(log_path, env=env)
            time.sleep(IDLE_S / 2)  # past its start-up
            cpu0 = cpu_seconds([ingest.proc.pid])
            time.sleep(IDLE_S)
            idle_cpu_s_per_s = (cpu_seconds([ingest.proc.pid]) - cpu0) / IDLE_S
            kopilka, _ = run_fast(
                http_bench.measure(
                    "127.0.0.1",
                    port,
                    shop.path,
                    [ingest.proc.pid],
                    f"I{procs}",
                    args.seconds,
                    args.concurrency,
                )
            )
            for name in ("bare", "bare_uvloop"):
                ratio = kopilka["rps"] / figures[name]["rps"] if figures[name]["rps"] else 0
                kopilka[f"pct_of_{name}"] = round(100 * ratio, 1)
            # what it costs doing nothing (Kafka fetches for Prefer: wait, timers), and the CPU
            # per webhook without it: at a few hundred req/s on a busy machine idle is a share
            kopilka["idle_cpu_pct"] = round(100 * idle_cpu_s_per_s, 1)
            busy_s = kopilka["server_cpu_ms_per_req"] * kopilka["accepted"] / 1000
            net_s = busy_s - idle_cpu_s_per_s * kopilka["seconds"]
            kopilka["cpu_ms_per_req_net_of_idle"] = round(1000 * net_s / kopilka["accepted"], 3)
            kopilka["peak_rss_mb"] = round(rss_mb([ingest.proc.pid], "VmHWM"), 1)
            figures[f"ingress_{procs}_procs"] = kopilka
            ingest.stop()
            stack.processes.remove(ingest)
    finally:
        stack.stop()
    figures["loadavg_end"] = list(os.getloadavg())
    return figures


def parse_procs(value: str) -> list[int]:
    counts = [int(v) for v in value.split(",") if v.strip().isdigit()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of process counts, e.g. 1,2")
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--procs", type=parse_procs, default=[1], help="process counts, e.g. 1,2")
    p.add_argument("--seconds", type=float, default=15.0, help="load per side")
    p.add_argument("--concurrency", type=int, default=64)
    args = p.parse_args()
    figures = vs_bare(args)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
