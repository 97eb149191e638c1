"""Events rebuild rate: `kopilka replay events --into postgres`, events/s (issue 11: >= 10,000).

`make bench` calls `rebuild_rate(stack)` last, on the events its own load put on
loyalty.events, with the worker still writing (as in production). Standalone, it starts a
stack of its own (Kafka, durable Postgres; no worker, no ingress), puts N schema-valid
synthetic events on the topic (tests/perf/synthetic_events.py) and rebuilds; with `--check`
it first writes them through the worker's sink code as well and compares the two read models.

    .venv/bin/python tests/perf/events_replay_bench.py [--events 100000] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
from aiokafka.errors import KafkaTimeoutError
from benchkit import start_stack
from procstat import CLK_TCK
from synthetic_events import records

from kopilka.cli import events_rebuild
from kopilka.core import topics
from kopilka.core.kafka import make_producer

SNAPSHOT = {
    "ledger_entries": "SELECT event_id, tenant_id, customer_id, type, order_id, amount, points,"
    " balance_after, expires_at, occurred_at, event, delta, reason FROM ledger_entries"
    " ORDER BY event_id",
    "lots": "SELECT * FROM lots ORDER BY lot_id",
    "balances": "SELECT tenant_id, customer_id, balance, lifetime_spend, level, seq FROM balances"
    " ORDER BY tenant_id, customer_id",
}


def rebuild_rate(stack) -> dict:
    """Rebuild the stack's read model once; the rate over the events read."""
    settings = stack.settings()
    job = events_rebuild.Rebuild(restart=True)
    postgres = stack.process("postgres").proc.pid
    pg0, cpu0, t0 = _tree_cpu(postgres), time.process_time(), time.perf_counter()
    out = asyncio.run(events_rebuild.run(job, settings))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    pg = _tree_cpu(postgres) - pg0
    asyncio.run(_drop(settings.database_url.get_secret_value(), out["replaced_schema"]))
    return {
        **{k: v for k, v in out.items() if k != "replaced_schema"},
        "seconds": round(wall, 2),
        "events_per_s": round(out["read"] / wall) if wall else None,
        "replay_cpu_us_per_event": round(cpu / max(out["read"], 1) * 1e6, 1),
        # Postgres's CPU meanwhile (the worker's writes too, when it runs)
        "postgres_cpu_us_per_event": round(pg / max(out["read"], 1) * 1e6, 1),
    }


def _tree_cpu(root: int) -> float:
    """CPU seconds of `root` and its descendants, live or ended (the postmaster's backends,
    which a `runuser` wrapper puts outside the process group procstat counts)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime + stime, and cutime + cstime: the children it waited for (ended backends)
            stats[int(entry.name)] = (int(fields[1]), sum(map(int, fields[11:15])))
    tree, grew = {root}, True
    while grew:
        found = {pid for pid, (ppid, _) in stats.items() if ppid in tree} - tree
        tree |= found
        grew = bool(found)
    return sum(stats[pid][1] for pid in tree if pid in stats) / CLK_TCK


async def _drop(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def _produce(settings, items: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for i in range(0, len(items), 5000):
            for attempt in range(10):  # a new topic's leaders may not be elected yet
                try:
                    sent = [
                        await producer.send(topics.EVENTS.name, value, key=key)
                        for key, value in items[i : i + 5000]
                    ]
                    await asyncio.gather(*sent)
                    break
                except KafkaTimeoutError:
                    if attempt == 9:
                        raise
                    await asyncio.sleep(2)
    finally:
        await producer.stop()


async def _through_sink(dsn: str, items: list[tuple[bytes, bytes]]) -> None:
    from kopilka.core import db
    from sinks.postgres import ReadModelSink

    pool = await db.create_pool(dsn, max_size=2)
    sink = ReadModelSink()
    for i in range(0, len(items), 1000):
        for _, value in items[i : i + 1000]:
            sink.add(value)
        await sink.flush(pool)
    await pool.close()


async def snapshot(dsn: str) -> dict[str, list]:
    conn = await asyncpg.connect(dsn)
    try:
        return {t: [tuple(r) for r in await conn.fetch(sql)] for t, sql in SNAPSHOT.items()}
    finally:
        await conn.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--check", action="store_true", help="compare with the sink's read model")
    args = p.parse_args()
    stack = start_stack("events-replay-bench", worker=False, ingest=False)
    try:
        settings = stack.settings()
        dsn = settings.database_url.get_secret_value()
        items = records(args.events)
        asyncio.run(_produce(settings, items))
        if args.check:
            asyncio.run(_through_sink(dsn, items))
            before = asyncio.run(snapshot(dsn))
        figures = rebuild_rate(stack)
        if args.check:
            after = asyncio.run(snapshot(dsn))
            figures["equal_to_sink"] = after == before
            figures["rows"] = {t: len(rows) for t, rows in after.items()}
        figures["loadavg"] = os.getloadavg()
        print(json.dumps(figures))
        return 0 if figures.get("equal_to_sink", True) else 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
