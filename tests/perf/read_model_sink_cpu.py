"""CPU per event of the worker's ledger sink (sinks/postgres.py ReadModelSink: add + flush).

Starts its own throw-away Postgres (free port, temp data dir), applies the migrations, feeds N
synthetic events in batches of the sink's default size and prints this process's CPU seconds
per event (parsing, row building, encoding; Postgres's own CPU is not counted). To compare two
versions of the sink, run it with PYTHONPATH pointing at the other checkout.

    .venv/bin/python tests/perf/read_model_sink_cpu.py [--events 30000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_events import records

from kopilka.core import db
from kopilka.devstack import devservices


async def measure(dsn: str, n: int, batch: int) -> dict:
    from sinks.postgres import ReadModelSink

    await db.migrate(dsn)
    values = [v for _, v in records(n)]
    pool = await db.create_pool(dsn, max_size=2)
    sink = ReadModelSink()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(0, len(values), batch):
        for raw in values[i : i + batch]:
            sink.add(raw)
        await sink.flush(pool)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await pool.close()
    import sinks.postgres

    return {
        "sink": sinks.postgres.__file__,
        "events": len(values),
        "cpu_us_per_event": round(cpu / len(values) * 1e6, 1),
        "events_per_s": round(len(values) / wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kopilka-sinkcpu-") as tmp:
        port = devservices.free_port()
        pg = devservices.start_postgres(
            Path(tmp) / "pg", port, log_path=Path(tmp) / "pg.log", durable=False
        )
        try:
            print(asyncio.run(measure(pg.extra["dsn"], args.events, args.batch)))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
