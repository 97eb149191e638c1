"""`kopilka replay raw`: re-feed accepted webhooks of a period through the pipeline.

kopilka replay raw [--from T] [--to T] [--from-offset N] [--to-offset N] [--tenant ID] [--dry-run]
  T: an ISO 8601 time (2026-11-27T10:00:00+03:00) or a duration ago (90m, 24h, 7d).
  Interrupted? Run the same command again: it goes on from where it stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

from kopilka.raw_replay import RawReplay, run
from kopilka.settings import PROJECT_ROOT, Settings

COMMANDS = ("replay",)
_AGO = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def moment(value: str) -> datetime:
    """An ISO 8601 time (UTC when it names no zone) or a duration ago: 90m, 24h, 7d."""
    if match := _AGO.fullmatch(value.strip()):
        return datetime.now(UTC) - timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            "a time like 2026-11-27T10:00:00+03:00, or a duration ago like 90m, 24h, 7d"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser("replay", help="re-feed records through the pipeline")
    kinds = replay.add_subparsers(dest="replay_kind", required=True)
    raw = kinds.add_parser("raw", help="accepted webhooks of a period, through normalize again")
    raw.add_argument("--from", dest="since", type=moment, help="records from this time")
    raw.add_argument("--to", dest="until", type=moment, help="records up to this time")
    raw.add_argument("--from-offset", type=int, help="records from this offset of each partition")
    raw.add_argument("--to-offset", type=int, help="records before this offset of each partition")
    raw.add_argument("--tenant", help="only this shop's webhooks")
    raw.add_argument("--dry-run", action="store_true", help="count, feed nothing")


def main(args: argparse.Namespace, settings: Settings) -> int:
    job = RawReplay(
        since=args.since,
        until=args.until,
        from_offset=args.from_offset,
        to_offset=args.to_offset,
        tenant_id=args.tenant,
        dry_run=args.dry_run,
    )
    counts = asyncio.run(run(job, settings, PROJECT_ROOT / ".data" / "replay"))
    print(json.dumps(counts))
    return 0
