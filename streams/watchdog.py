"""A partition whose commits stopped moving: said in the log, with why, every 15 s.

Offsets commit up to the first message not yet acknowledged; one message that is never
acknowledged holds its whole partition's commits back (records after it are processed, but
would all be processed again after a restart). The watchdog names such partitions with the
message holding them: its offset, its age, its references (who still holds it).
`register(stream_app)` puts the watch on an app (streams.app).
"""

from __future__ import annotations

import time

from kopilka.core.logging import get_logger
from streams.app import StreamApp

log = get_logger(__name__)

STUCK_AFTER_S = 30.0
_first_seen: dict[tuple[str, int, int], float] = {}
_sa: StreamApp  # bound by `register`


def register(stream_app: StreamApp) -> None:
    global _sa
    _sa = stream_app
    stream_app.app.timer(interval=15.0)(_watch_commits)


async def _watch_commits() -> None:
    consumer = _sa.app.consumer
    oldest: dict = {}
    for message in list(consumer._unacked_messages):
        tp = message.tp
        if tp not in oldest or message.offset < oldest[tp].offset:
            oldest[tp] = message
    now = time.monotonic()
    seen = set()
    for tp, message in oldest.items():
        key = (tp.topic, tp.partition, message.offset)
        seen.add(key)
        first = _first_seen.setdefault(key, now)
        if now - first >= STUCK_AFTER_S:
            log.warning(
                "partition_commits_held",
                topic=tp.topic,
                partition=tp.partition,
                offset=message.offset,
                committed=consumer._committed_offset.get(tp),
                read=consumer._read_offset.get(tp),
                held_s=round(now - first),
                refcount=getattr(message, "refcount", None),
                acked=message.acked,
            )
    for tp, acked in list(consumer._acked.items()):
        committed = consumer._committed_offset.get(tp)
        if not acked or committed is None or min(acked) <= committed or tp in oldest:
            continue
        key = (tp.topic, tp.partition, committed)  # acks after a hole nobody holds
        seen.add(key)
        first = _first_seen.setdefault(key, now)
        if now - first >= STUCK_AFTER_S:
            log.warning(
                "partition_commits_gap",
                topic=tp.topic,
                partition=tp.partition,
                committed=committed,
                first_acked=min(acked),
                read=consumer._read_offset.get(tp),
                held_s=round(now - first),
            )
    for key in set(_first_seen) - seen:
        del _first_seen[key]
