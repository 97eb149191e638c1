"""A py-spy profile of the worker or the ingress under end-to-end load.

    make profile-worker                  # or: make profile-ingress
    make profile-worker ARGS="--seconds 30 --rate 100"

A fresh stack in .data/bench-profile (ingress + 1 worker), one shop, a warm-up; then purchases
as fast as 64 connections go (tests/perf/loadgen.py) while `py-spy record` samples the chosen
process (and, for the ingress, the processes it forked) for --seconds. Writes
.data/bench/<which>.speedscope.json (open it at https://www.speedscope.app or with
`speedscope`) and prints the 15 functions with the most own time, also written to
.data/bench/<which>.top.txt. py-spy needs ptrace (root, or CAP_SYS_PTRACE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

from benchkit import new_shop, start_stack, workers
from loadgen import hammer, purchase_factory, run

from kopilka.core.settings import PROJECT_ROOT

OUT = PROJECT_ROOT / ".data" / "bench"


def top_functions(speedscope: dict, limit: int = 15) -> tuple[list[tuple[str, float]], dict]:
    """Own time (s) per function, summed over every thread, and each thread's busy time (s).

    py-spy writes each sample's stack root first, so the last frame is the one running; its
    frames carry the line being run, so they are summed per function (name and file). Weights
    are seconds; idle threads are not sampled (no --idle), so busy = the sum of the weights."""
    frames = speedscope["shared"]["frames"]
    own: Counter[str] = Counter()
    busy: dict[str, float] = {}
    for profile in speedscope["profiles"]:
        busy[profile["name"]] = sum(profile["weights"])
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if stack:
                frame = frames[stack[-1]]
                where = "/".join(Path(frame.get("file") or "?").parts[-2:])
                own[f"{frame['name']} ({where})"] += weight
    return own.most_common(limit), busy


def render(which: str, top: list[tuple[str, float]], busy: dict, seconds: float) -> str:
    total = sum(busy.values()) or 1.0
    lines = [
        f"{which}: time sampled per thread over {seconds:.0f} s (py-spy skips a thread it judges"
        " idle; an event loop's select() that returns at once still counts)"
    ]
    lines += [f"  {name}: {s:.1f} s ({100 * s / seconds:.0f} %)" for name, s in busy.items()]
    lines += ["", f"{'own %':>6}  {'own s':>6}  function (file); % of all sampled time"]
    lines += [f"{100 * s / total:6.1f}  {s:6.2f}  {name}" for name, s in top]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("which", choices=["worker", "ingress"])
    p.add_argument("--seconds", type=float, default=20.0, help="how long py-spy samples")
    p.add_argument("--rate", type=int, default=50, help="samples per second")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument(
        "--gil",
        action="store_true",
        help="sample only the thread holding the GIL: the Python actually run, without the time"
        " a thread spends in a socket write it was preempted in (on 2 cores, most of it)",
    )
    args = p.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    OUT.mkdir(parents=True, exist_ok=True)
    output = OUT / f"{args.which}.speedscope.json"
    output.unlink(missing_ok=True)
    stack = start_stack("bench-profile")
    try:
        target = (workers(stack)[0] if args.which == "worker" else stack.process("ingest")).proc.pid
        # a warm-up first; py-spy starts once the worker is past its start-up, then the load
        # runs for --seconds + 2 while it records

        async def load_and_record() -> int:
            settings = stack.settings()
            shop = await new_shop(settings.database_url.get_secret_value(), "Profile shop")
            host, port, path = settings.http_host, settings.http_port, shop.path
            await hammer(host, port, path, purchase_factory("WARM"), concurrency=8, count=2_000)
            await shop.wait_for_awards(2_000, 120)  # past its start-up, every customer known
            cmd = [py_spy, "record", "--pid", str(target), "--rate", str(args.rate)]
            cmd += ["--duration", str(round(args.seconds)), "--format", "speedscope"]
            cmd += ["--output", str(output)]
            cmd += ["--subprocesses"] if args.which == "ingress" else []
            cmd += ["--gil"] if args.gil else []
            spy = await asyncio.create_subprocess_exec(*cmd)
            await hammer(
                host,
                port,
                path,
                purchase_factory("PROF"),
                concurrency=args.concurrency,
                seconds=args.seconds + 2,
                keep_latencies=False,
            )
            return await asyncio.wait_for(spy.wait(), 60)

        print(f"profiling the {args.which} (pid {target}) for {args.seconds:.0f} s ...", flush=True)
        code = run(load_and_record())
    finally:
        stack.stop()
    if code or not output.exists():
        print(f"py-spy failed (exit {code})", file=sys.stderr)
        return 1
    top, busy = top_functions(json.loads(output.read_text()))
    text = render(args.which, top, busy, args.seconds)
    (OUT / f"{args.which}.top.txt").write_text(text + "\n")
    print(f"\n{text}\n\nspeedscope profile: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
