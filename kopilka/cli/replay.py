"""`kopilka replay`: feed records of a period through the pipeline again.

kopilka replay raw [--from T] [--to T] [--from-offset N] [--to-offset N] [--tenant ID] [--dry-run]
                   [--into-bootstrap HOST:PORT[,...]] [--max-rate N]
kopilka replay events --into postgres [--restart] [--batch N]         rebuild the read model
kopilka replay events --into postgres --from T [--to T]               catch the live one up
kopilka replay events --to-endpoint ID --from T [--to T]              re-deliver to an endpoint
  T: an ISO 8601 time (2026-11-27T10:00:00+03:00) or a duration ago (90m, 24h, 7d).
  Interrupted? Run the same command again (as typed: `--from 24h` finds its state again): it
  goes on from where it stopped. Progress is kept in KOPILKA_REPLAY_STATE_DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta

from kopilka.cli import events_rebuild
from kopilka.cli.events_redeliver import EndpointRefused, Redelivery, redeliver
from kopilka.cli.events_replay import CatchUp, Span, catch_up
from kopilka.cli.progress import serve_metrics
from kopilka.cli.raw_replay import RawReplay, run
from kopilka.core.settings import Settings

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


class _Moment(argparse.Action):
    """A time option: its dest gets the moment, `<dest>_typed` the text as typed (what names a
    replay's resume state: `24h` is another moment each run, but the same command)."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        try:
            setattr(namespace, self.dest, moment(value))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        setattr(namespace, f"{self.dest}_typed", value)


def _time_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--from", dest="since", action=_Moment, help=f"{what} from this time")
    parser.add_argument("--to", dest="until", action=_Moment, help=f"{what} up to this time")
    parser.set_defaults(since_typed=None, until_typed=None)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser("replay", help="re-feed records through the pipeline")
    kinds = replay.add_subparsers(dest="replay_kind", required=True)
    raw = kinds.add_parser("raw", help="accepted webhooks of a period, through normalize again")
    _time_options(raw, "records")
    raw.add_argument("--from-offset", type=int, help="records from this offset of each partition")
    raw.add_argument("--to-offset", type=int, help="records before this offset of each partition")
    raw.add_argument("--tenant", help="only this shop's webhooks")
    raw.add_argument("--dry-run", action="store_true", help="count, feed nothing")
    raw.add_argument(
        "--into-bootstrap",
        metavar="HOST:PORT[,...]",
        help="feed another cluster's webhooks.raw (a new deployment) instead of this one's",
    )
    raw.add_argument("--max-rate", type=float, metavar="N", help="feed at most N records a second")
    ev = kinds.add_parser("events", help="loyalty.events into the read model or to an endpoint")
    where = ev.add_mutually_exclusive_group(required=True)
    where.add_argument("--into", choices=["postgres"], help="rebuild (or catch up) the read model")
    where.add_argument("--to-endpoint", metavar="ID", help="re-deliver to this webhook endpoint")
    _time_options(ev, "events")
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


def _typed(args: argparse.Namespace) -> tuple:
    """The period as typed: what names a replay's resume state."""
    return (args.since_typed, args.until_typed, args.from_offset, args.to_offset)


def span_of(args: argparse.Namespace) -> Span:
    return Span(args.since, args.until, args.from_offset, args.to_offset, typed=_typed(args))


def raw_job(args: argparse.Namespace) -> RawReplay:
    return RawReplay(
        since=args.since,
        until=args.until,
        from_offset=args.from_offset,
        to_offset=args.to_offset,
        tenant_id=args.tenant,
        dry_run=args.dry_run,
        into_bootstrap=args.into_bootstrap,
        max_rate=args.max_rate,
        typed=_typed(args),
    )


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
    state_dir = settings.replay_state_dir
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
    except (KeyboardInterrupt, asyncio.CancelledError):
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
    if settings.replay_metrics_port:
        serve_metrics(settings.replay_metrics_port, settings.metrics_host)
    if args.replay_kind == "events":
        return events_main(args, settings)
    if args.max_rate is not None and args.max_rate <= 0:
        print("kopilka replay raw: --max-rate must be above 0", file=sys.stderr)
        return 2
    job = raw_job(args)
    try:
        counts = asyncio.run(run(job, settings, settings.replay_state_dir))
    except (KeyboardInterrupt, asyncio.CancelledError):
        if job.dry_run:
            hint = "a dry run keeps no progress: run it again to count from the start."
        else:
            hint = (
                "what was fed is on the broker; run the same command again to go on from where"
                f" it stopped (progress in {job.state_path(settings.replay_state_dir)})."
            )
        print(f"kopilka replay raw: stopped; {hint}", file=sys.stderr)
        return 130
    print(json.dumps(counts))
    return 0
