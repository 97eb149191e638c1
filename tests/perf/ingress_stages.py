"""Where the ingress's CPU per webhook goes: the ingress with one part taken out at a time.

    make bench-ingest ARGS="--stages --rounds 3 --seconds 8"

One stack without a worker, one shop, the load of `make bench`'s ingress step (64 connections,
standard purchases, tests/perf/loadgen.py). Each round measures the bare aiohttp handler and
every variant of tests/perf/ingress_variant.py, in an order reversed every other round: the
ingress as deployed (`full`) and the ingress with one part replaced, in its own process, by a
no-op or a stand-in. A part's cost is `full` minus the variant without it: what the part costs
in place, with the rest of the request around it (on this machine more than the same call
costs in a loop on its own: 18 against 12 us for parse_webhook; and a part taken out also lets
more requests share each turn of the event loop). Figures are the median over rounds of the
server's CPU ms per accepted webhook; timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from statistics import median

import http_bench
from benchkit import new_shop, start_stack
from ingress_variant import VARIANTS
from loadgen import run as run_fast

from kopilka.devstack import devservices
from kopilka.devstack.stack import Stack

VARIANT_SCRIPT = Path(__file__).with_name("ingress_variant.py")
PROJECT = Path(__file__).resolve().parents[2]
START_S = 2.0


def _start_variant(stack: Stack, variant: str) -> tuple[devservices.ManagedProcess, int]:
    port = devservices.free_port()
    env = {"KOPILKA_HTTP_PORT": str(port), "KOPILKA_INGRESS_PROCS": "1"}
    argv = [sys.executable, str(VARIANT_SCRIPT), variant]
    started = http_bench.start_server(
        stack, f"ingest-{variant}", argv, port, env=env, cwd=PROJECT, start_s=60
    )
    time.sleep(START_S)  # past its start-up
    return started


def stages(args: argparse.Namespace) -> dict:
    """Every variant's figures over --rounds rounds on one stack: `summarise`'s table."""
    runs: dict[str, list[dict]] = {}
    stack = start_stack("bench-stages", worker=False, ingest=False)
    try:
        dsn = stack.settings().database_url.get_secret_value()
        shop = run_fast(new_shop(dsn, "Stages bench"))
        for round_no in range(args.rounds):
            order = ["bare", *VARIANTS]  # every other round backwards: the machine drifts
            for name in order if round_no % 2 == 0 else reversed(order):
                if name == "bare":
                    proc, port = http_bench.start_bare(stack)
                else:
                    proc, port = _start_variant(stack, name)
                figures, _ = run_fast(
                    http_bench.measure(
                        "127.0.0.1",
                        port,
                        shop.path,
                        [proc.proc.pid],
                        f"{name}-{round_no}",
                        args.seconds,
                        args.concurrency,
                    )
                )
                proc.stop()
                stack.processes.remove(proc)
                runs.setdefault(name, []).append(figures)
                print(
                    f"round {round_no + 1} {name:16s} {figures['rps']:>9,.0f} req/s "
                    f"{figures['server_cpu_ms_per_req']:.4f} ms CPU per webhook",
                    flush=True,
                )
    finally:
        stack.stop()
    table = summarise(runs)
    table["loadavg_end"] = list(os.getloadavg())
    return table


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Per variant the medians over rounds (and, to check them, how busy the server and the
    client were and how many answers were not 202); for each `no_*` variant, `full` minus it."""
    table = {
        name: {
            "cpu_ms": round(median(r["server_cpu_ms_per_req"] for r in turns), 4),
            "rps": round(median(r["rps"] for r in turns)),
            "turns_cpu_ms": [r["server_cpu_ms_per_req"] for r in turns],
            "server_cpu_pct": [r["server_cpu_pct"] for r in turns],
            "client_cpu_pct": [r["client_cpu_pct"] for r in turns],
            "non_202": sum(sum(r["non_202"].values()) for r in turns),
        }
        for name, turns in runs.items()
    }
    full = table["full"]["cpu_ms"]
    for name, row in table.items():
        if name.startswith("no_"):
            row["part_cost_ms"] = round(full - row["cpu_ms"], 4)
    return table


def render(table: dict) -> str:
    lines = [f"{'variant':16s} {'req/s':>9s} {'CPU ms':>8s} {'part':>8s}  what it leaves out"]
    for name, row in table.items():
        if not isinstance(row, dict):
            continue
        part = f"{row['part_cost_ms']:.4f}" if "part_cost_ms" in row else ""
        what = VARIANTS.get(name, "bare aiohttp: read the body, answer 202 (the baseline)")
        lines.append(f"{name:16s} {row['rps']:>9,d} {row['cpu_ms']:>8.4f} {part:>8s}  {what}")
    return "\n".join(lines)
