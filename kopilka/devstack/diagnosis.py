"""What a test prints when the pipeline did not settle: where the records wait, and what the
processes said about it.

- `group_lag`: records the workers' consumer group has not committed yet, per topic (a topic
  that keeps its lag is where the pipeline stopped);
- `log_summary`: a process's JSON log in a few lines: its warnings and errors counted by event,
  the newest of them, and its last line of a given event (e.g. a worker's `ledger_progress`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient


async def group_lag(bootstrap: list[str], group: str) -> dict[str, int]:
    """Records not yet committed by the consumer group, per topic (topics with none left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        end = await consumer.end_offsets(list(committed))
        lag: Counter[str] = Counter()
        for tp, meta in committed.items():
            lag[tp.topic] += end[tp] - max(meta.offset, 0)
        return {t: n for t, n in lag.items() if n}
    finally:
        await consumer.stop()
        await admin.close()


def log_summary(path: Path, last_of: str = "ledger_progress", newest: int = 12) -> str:
    """`path`'s warnings and errors by event, the `newest` of them, and its last `last_of`."""
    counts: Counter[str] = Counter()
    bad: list[str] = []
    last = ""
    for line in path.read_text(errors="replace").splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            entry = json.loads(line[start:])
        except ValueError:
            continue
        if entry.get("event") == last_of:
            last = line[start:]
        if entry.get("level") in ("warning", "error", "critical"):
            counts[str(entry.get("event"))[:80]] += 1
            bad.append(line[start:][:400])
    lines = [f"{path.name}: last {last_of}: {last[:400] or '(none)'}"]
    lines += [f"  {n} x {event}" for event, n in counts.most_common(10)]
    lines += [f"  | {line}" for line in bad[-newest:]]
    return "\n".join(lines)
