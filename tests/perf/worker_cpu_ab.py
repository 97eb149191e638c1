"""Two revisions' worker CPU per purchase, measured side by side at the same time.

    .venv/bin/python tests/perf/worker_cpu_ab.py --a 5879ddb --b HEAD [--pairs 2] [--backlog 3000]

On this shared machine the same code measures 3.3 to 4.9 ms per purchase from one run of
`worker_cpu.py` to the next, minutes apart: more than most changes are worth. Run one after the
other, A and B see different machines. Here each pair runs both at once, each on its own stack
(`worker_cpu.py` in a git worktree of each revision under .data/ab/, with this virtualenv), so
both see the same load; the table gives each round's CPU per purchase and B's ratio to A.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import mean

from kopilka.core.settings import PROJECT_ROOT
from kopilka.devstack.kafka_server import KAFKA_VERSION

HERE = Path(__file__).resolve().parent


def worktree(rev: str) -> Path:
    sha = subprocess.check_output(["git", "rev-parse", "--short", rev], cwd=PROJECT_ROOT, text=True)
    path = PROJECT_ROOT / ".data" / "ab" / sha.strip()
    if not path.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), sha.strip()],
            cwd=PROJECT_ROOT,
            check=True,
            capture_output=True,
        )
    # the broker's jars this checkout already fetched, rather than fetching them again
    libs = f"kafka-{KAFKA_VERSION}"
    if (PROJECT_ROOT / ".data" / libs).exists() and not (path / ".data" / libs).exists():
        (path / ".data").mkdir(exist_ok=True)
        (path / ".data" / libs).symlink_to(PROJECT_ROOT / ".data" / libs)
    return path


def rounds(tree: Path, backlog: int) -> dict[str, float]:
    """One worker_cpu.py run of that tree: CPU ms per purchase of each round."""
    out = subprocess.run(
        [sys.executable, str(tree / "tests/perf/worker_cpu.py"), "--backlog", str(backlog)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    figures = [json.loads(line) for line in out.splitlines() if line.startswith('{"round"')]
    return {f["round"]: f["cpu_ms_per_purchase"] for f in figures}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--a", required=True, help="the baseline revision")
    p.add_argument("--b", default="HEAD", help="the revision compared with it")
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--backlog", type=int, default=3000)
    args = p.parse_args()
    trees = {"A": worktree(args.a), "B": worktree(args.b)}
    results: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for pair in range(1, args.pairs + 1):
        with ThreadPoolExecutor(2) as pool:
            done = {side: pool.submit(rounds, tree, args.backlog) for side, tree in trees.items()}
        for side, future in done.items():
            results[side].append(future.result())
        print(f"pair {pair}: A {results['A'][-1]}  B {results['B'][-1]}", flush=True)
    print(f"\nCPU ms per purchase, A = {args.a}, B = {args.b}, {args.pairs} pairs run at once")
    for name in sorted({r for run in results["A"] for r in run}):
        a = [run[name] for run in results["A"] if name in run]
        b = [run[name] for run in results["B"] if name in run]
        if a and b:
            print(f"  {name}: A {mean(a):.3f}  B {mean(b):.3f}  B/A {mean(b) / mean(a):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
