"""`kopilka replay`: feed records of a period through the pipeline again.

kopilka replay raw [--from T] [--to T] [--from-offset N] [--to-offset N] [--tenant ID] [--dry-run]
kopilka replay events --into postgres [--restart] [--batch N]         rebuild the read model
kopilka replay events --into postgres --from T [--to T]               catch the live one up
kopilka replay events --to-endpoint ID --from T [--to T]              re-deliver to an endpoint
  T: an ISO 8601 time (2026-11-27T10:00:00+03:00) or a duration ago (90m, 24h, 7d).
  Interrupted? Run the same command again: it goes on from where it stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta

from kopilka import events_rebuild
from kopilka.events_redeliver import EndpointRefused, Redelivery, redeliver
from kopilka.events_replay import CatchUp, Span, catch_up
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
    ev = kinds.add_parser("events", help="loyalty.events into the read model or to an endpoint")
    where = ev.add_mutually_exclusive_group(required=True)
    where.add_argument("--into", choices=["postgres"], help="rebuild (or catch up) the read model")
    where.add_argument("--to-endpoint", metavar="ID", help="re-deliver to this webhook endpoint")
    ev.add_argument("--from", dest="since", type=moment, help="events from this time")
    ev.add_argument("--to", dest="until", type=moment, help="events up to this time")
    ev.add_argument("--from-offset", type=int, help="events from this offset of each partition")
    ev.add_argument("--to-offset", type=int, help="events before this offset of each partition")
    ev.add_argument(
        "--batch", type=int, help="events per transaction [rebuild 20000, otherwise 5000]"
    )
    ev.add_argument("--restart", action="store_true", help="drop an unfinished rebuild first")
    ev.add_argument(
        "--allow-truncated-history",
        action="store_true",
        help="rebuild even though retention deleted the topic's first events",
    )


def span_of(args: argparse.Namespace) -> Span:
    return Span(args.since, args.until, args.from_offset, args.to_offset)


def check_events_args(args: argparse.Namespace) -> str | None:
    """What is wrong with a `replay events` command line, in words; None when nothing."""
    partial = span_of(args) != Span()
    if args.batch is not None and args.batch < 1:
        return "--batch must be at least 1"
    if args.to_endpoint is not None:
        if args.since is None and args.from_offset is None:
            return "--to-endpoint needs --from T (or --from-offset N): which period to re-deliver"
        if args.restart or args.allow_truncated_history:
            return "--restart and --allow-truncated-history are for --into postgres"
        return None
    if partial and args.since is None and args.from_offset is None:
        return "--to/--to-offset need --from/--from-offset (a rebuild reads the whole topic)"
    if partial and (args.restart or args.allow_truncated_history):
        return "--restart and --allow-truncated-history are for a rebuild (no --from)"
    return None


def events_main(args: argparse.Namespace, settings: Settings) -> int:
    problem = check_events_args(args)
    if problem:
        print(f"kopilka replay events: {problem}", file=sys.stderr)
        return 2
    state_dir = PROJECT_ROOT / ".data" / "replay"
    rebuild = args.to_endpoint is None and span_of(args) == Span()
    try:
        if args.to_endpoint is not None:
            job = Redelivery(args.to_endpoint, span_of(args), batch=args.batch or 5000)
            counts = asyncio.run(redeliver(job, settings, state_dir))
        elif span_of(args) != Span():
            job = CatchUp(span_of(args), args.batch or 5000)
            counts = asyncio.run(catch_up(job, settings, state_dir))
        else:
            job = events_rebuild.Rebuild(
                restart=args.restart,
                allow_truncated_history=args.allow_truncated_history,
                **({"batch": args.batch} if args.batch else {}),
            )
            counts = asyncio.run(events_rebuild.run(job, settings))
    except (events_rebuild.RebuildRefused, EndpointRefused) as exc:
        print(f"kopilka replay events: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        untouched = " the live read model is untouched;" if rebuild else ""
        print(
            f"kopilka replay events: stopped;{untouched} run the same command again to go on"
            " from where it stopped.",
            file=sys.stderr,
        )
        return 130
    print(json.dumps(counts))
    return 0


def main(args: argparse.Namespace, settings: Settings) -> int:
    if args.replay_kind == "events":
        return events_main(args, settings)
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
