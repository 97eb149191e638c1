"""The worker's CPU per purchase: a backlog caught up, then more rounds, optionally profiled.

    .venv/bin/python tests/perf/worker_cpu.py --backlog 3000 --rounds 2 [--profile]

A fresh stack in .data/bench-worker-cpu (Kafka, Postgres, Redis, the ingress), one shop. Round 1
sends `--backlog` standard purchases before any worker runs, then starts the worker and counts
its CPU until every award is in Postgres (what `make bench` calls catching up). Later rounds send
`--backlog` more to the running, idle worker and count its CPU from the first request to the last
award. `--idle S` then measures the idle worker's CPU per second (timers, fetch loops over every
partition). Figures are process CPU time per purchase: the machine is shared, so compare these,
not rates. With --profile, py-spy samples the worker during the last round (and the idle phase)
into .data/bench/worker-cpu.speedscope.json (the idle phase into worker-idle.speedscope.json),
and the top frames of the round (own and cumulative) are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchkit import new_shop, start_stack, workers
from loadgen import hammer, purchase_factory, run
from procstat import cpu_seconds

from kopilka.core.settings import PROJECT_ROOT

OUT = PROJECT_ROOT / ".data" / "bench"


def frames_summary(speedscope: dict, limit: int) -> tuple[list, list, float]:
    """(own, cumulative, total) seconds per function over every thread's samples."""
    frames = speedscope["shared"]["frames"]
    own: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    total = 0.0

    def name(i: int) -> str:
        f = frames[i]
        return f"{f['name']} ({'/'.join(Path(f.get('file') or '?').parts[-2:])})"

    for profile in speedscope["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            total += weight
            if stack:
                own[name(stack[-1])] += weight
                for fn in {name(i) for i in stack}:
                    cum[fn] += weight
    return own.most_common(limit), cum.most_common(limit), total


async def one_round(stack, shop, host, port, prefix, count, start_worker, profile_to):
    conn_awards = await shop_awards(shop)
    if start_worker:
        await hammer(
            host,
            port,
            shop.path,
            purchase_factory(prefix),
            count=count,
            concurrency=32,
            keep_latencies=False,
        )
        stack.start_worker()
        started = time.perf_counter()
        pid = workers(stack)[0].proc.pid
        cpu0 = cpu_seconds([pid])
        spy = _spy(pid, profile_to)
    else:
        pid = workers(stack)[0].proc.pid
        await asyncio.sleep(2)  # let the worker go idle
        spy = _spy(pid, profile_to)
        cpu0 = cpu_seconds([pid])
        started = time.perf_counter()
        await hammer(
            host,
            port,
            shop.path,
            purchase_factory(prefix),
            count=count,
            concurrency=32,
            keep_latencies=False,
        )
    awarded, done = await shop.wait_for_awards(conn_awards + count, 600)
    cpu = cpu_seconds([pid]) - cpu0
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its profile on Ctrl-C
        await asyncio.to_thread(spy.wait, 60)
    return {
        "round": prefix,
        "purchases": awarded - conn_awards,
        "seconds": round(done - started, 2),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_purchase": round(1000 * cpu / max(awarded - conn_awards, 1), 3),
    }


async def shop_awards(shop) -> int:
    import asyncpg

    conn = await asyncpg.connect(shop.dsn)
    try:
        return await shop.awards(conn)
    finally:
        await conn.close()


def _spy(pid: int, output: Path | None) -> subprocess.Popen | None:
    if output is None:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    output.unlink(missing_ok=True)
    cmd = [py_spy, "record", "--pid", str(pid), "--rate", "50", "--nonblocking"]
    cmd += ["--format", "speedscope"]
    return subprocess.Popen([*cmd, "--output", str(output)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backlog", type=int, default=3000, help="purchases per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--profile", action="store_true", help="py-spy the last round")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--idle", type=float, default=0, help="then seconds of no load: CPU/s idle")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    prof = OUT / "worker-cpu.speedscope.json"
    stack = start_stack("bench-worker-cpu", worker=False)
    results = []
    try:
        settings = stack.settings()
        shop = run(new_shop(settings.database_url.get_secret_value(), "Worker CPU shop"))
        for r in range(args.rounds):
            last = r == args.rounds - 1
            res = run(
                one_round(
                    stack,
                    shop,
                    settings.http_host,
                    settings.http_port,
                    f"R{r}",
                    args.backlog,
                    r == 0,
                    prof if (args.profile and last) else None,
                )
            )
            results.append(res)
            print(json.dumps(res), flush=True)
        if args.idle:
            pid = workers(stack)[0].proc.pid
            time.sleep(2)
            idle_prof = OUT / "worker-idle.speedscope.json"
            spy = _spy(pid, idle_prof) if args.profile else None
            cpu0 = cpu_seconds([pid])
            time.sleep(args.idle)
            idle = (cpu_seconds([pid]) - cpu0) / args.idle
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            print(json.dumps({"idle_cpu_s_per_s": round(idle, 3)}), flush=True)
    finally:
        stack.stop()
    if args.profile and prof.exists():
        own, cum, total = frames_summary(json.loads(prof.read_text()), args.top)
        print(f"\nsampled {total:.1f} s; own time:")
        for fn, s in own:
            print(f"  {100 * s / total:5.1f} %  {fn}")
        print("cumulative:")
        for fn, s in cum:
            print(f"  {100 * s / total:5.1f} %  {fn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
