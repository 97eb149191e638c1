"""Raw replay rate: `kopilka replay raw`, records/s read from webhooks.raw and fed to it again.

`make bench` calls `refeed_rate(stack)` last (step 9, after the stream step, so the duplicates
it feeds disturb no other figure): a real re-feed (not a dry run) of every record its own load
put on webhooks.raw; the worker then processes them as duplicates, after the timing. Standalone,
it starts a stack of its own (Kafka, Postgres; no worker, no ingress), puts N raw records of
the ingress's format on the topic (standard purchases, keyed by shop) and re-feeds them, or
only reads them with `--dry-run`.

    .venv/bin/python tests/perf/raw_replay_bench.py [--records 100000] [--dry-run]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from aiokafka.errors import KafkaTimeoutError
from benchkit import start_stack

from ingest.publish import raw_record
from kopilka.cli import raw_replay
from kopilka.core import topics
from kopilka.core.kafka import make_producer


def refeed_rate(stack, dry_run: bool = False) -> dict:
    """Replay the stack's whole webhooks.raw once (its own state folder, so nothing resumes);
    the rate over the records read."""
    settings = stack.settings()
    job = raw_replay.RawReplay(dry_run=dry_run)
    cpu0, t0 = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="raw-replay-bench-") as state_dir:
        counts = asyncio.run(raw_replay.run(job, settings, Path(state_dir)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        **counts,
        "dry_run": dry_run,
        "seconds": round(wall, 2),
        "records_per_s": round(counts["scanned"] / wall) if wall else None,
        "cpu_us_per_record": round(cpu / max(counts["scanned"], 1) * 1e6, 1),
    }


def _records(n: int, shops: int = 20):
    tenants = [str(uuid.uuid4()) for _ in range(shops)]
    now = datetime.now(UTC)
    for i in range(n):
        tenant = tenants[i % shops]
        body = orjson.dumps(
            {
                "action": "purchase",
                "payload": {
                    "orderId": f"RB-{i}",
                    "amount": 1000 + i % 5000,
                    "email": f"c{i % 5000}@example.com",
                    "description": "bench order",
                },
            }
        )
        value = raw_record(
            body,
            event_id=str(uuid.uuid4()),
            tenant_id=tenant,
            received_at=now,
            content_type="application/json",
            wait=False,
        )
        yield tenant.encode(), value


async def _produce(settings, n: int) -> None:
    items = list(_records(n))
    producer = make_producer(settings)
    await producer.start()
    try:
        for i in range(0, n, 5000):
            for attempt in range(10):  # a new topic's leaders may not be elected yet
                try:
                    sent = [
                        await producer.send(topics.WEBHOOKS_RAW.name, value, key=key)
                        for key, value in items[i : i + 5000]
                    ]
                    await asyncio.gather(*sent)
                    break
                except KafkaTimeoutError:  # a retried chunk may be on the topic twice
                    if attempt == 9:
                        raise
                    await asyncio.sleep(2)
    finally:
        await producer.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--dry-run", action="store_true", help="read and count only")
    args = p.parse_args()
    stack = start_stack("raw-replay-bench", worker=False, ingest=False)
    try:
        asyncio.run(_produce(stack.settings(), args.records))
        figures = refeed_rate(stack, dry_run=args.dry_run)
        figures["loadavg"] = os.getloadavg()
        print(json.dumps(figures))
        ok = figures["scanned"] >= args.records and figures["refed"] == (
            0 if args.dry_run else figures["scanned"]
        )
        return 0 if ok else 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
