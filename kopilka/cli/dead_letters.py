"""`kopilka dead-letters`: list, show and redrive what the stream stages gave up on.

kopilka dead-letters list [--tenant ID] [--stage S] [--code C] [--since T] [--redriven yes|no]
                          [--limit N] [--before CURSOR] [--json]       newest first
kopilka dead-letters show ID                                           one letter, with its bytes
kopilka dead-letters redrive ID... [--force] [--dry-run]
kopilka dead-letters redrive --tenant ID [--stage S] [--code C] [--since T] [--force] [--dry-run]

T is an ISO 8601 time (UTC when it names no zone) or an age: 90s, 30m, 24h, 7d. A redrive sends
the original record back to its topic (see kopilka/directory/redrive.py); letters already redriven
are skipped unless --force. Exit status: 0 done, 1 something not found or not sent, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import get_args

from kopilka.core import db
from kopilka.core.settings import Settings
from schemas.dead_letters import Stage

COMMANDS = ("dead-letters",)
_AGE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    pass


def since(value: str, now: datetime | None = None) -> datetime:
    """An ISO time (UTC when it names no zone) or an age (`24h`) before now."""
    match = _AGE.fullmatch(value.strip())
    if match:
        now = now or datetime.now(UTC)
        return now - timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            "an ISO 8601 time (2026-11-27T10:00:00+03:00) or an age (90s, 30m, 24h, 7d)"
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _limit(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 1000:
        raise argparse.ArgumentTypeError("a whole number from 1 to 1000")
    return int(value)


def _filters(p: argparse.ArgumentParser, tenant_help: str = "only this tenant's") -> None:
    p.add_argument("--tenant", help=tenant_help)
    p.add_argument("--stage", choices=get_args(Stage))
    p.add_argument("--code", help="only this reason code, e.g. internal_error")
    p.add_argument("--since", type=since, metavar="T", help="dead at or after T (time or age)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    dl = sub.add_parser("dead-letters", help="records the pipeline gave up on: list, redrive")
    actions = dl.add_subparsers(dest="dl_action", required=True)
    lst = actions.add_parser("list", help="dead letters, newest first")
    _filters(lst)
    lst.add_argument("--redriven", choices=("yes", "no"), help="only (never) redriven ones")
    lst.add_argument("--limit", type=_limit, default=50)
    lst.add_argument("--before", metavar="CURSOR", help="the next page: `next` of the last one")
    lst.add_argument("--json", action="store_true", help="JSON instead of a table")
    show = actions.add_parser("show", help="one dead letter, with the original record")
    show.add_argument("id")
    redrive = actions.add_parser(
        "redrive", help="send dead letters back to their topic (by id, or all of a tenant's)"
    )
    redrive.add_argument("ids", nargs="*", metavar="ID")
    _filters(redrive, "every (matching) dead letter of this tenant, instead of IDs")
    redrive.add_argument("--force", action="store_true", help="also those already redriven")
    redrive.add_argument("--dry-run", action="store_true", help="say what would be sent")


def list_filters(args: argparse.Namespace):
    from kopilka.directory.dead_letters import Filters, decode_cursor

    before = None
    if getattr(args, "before", None):
        try:
            before = decode_cursor(args.before)
        except ValueError as exc:
            raise UsageError(f"--before: {exc}") from exc
    redriven = {"yes": True, "no": False, None: None}[getattr(args, "redriven", None)]
    return Filters(
        tenant_id=args.tenant,
        stage=args.stage,
        code=args.code,
        since=args.since,
        redriven=redriven,
        before=before,
    )


def redrive_target(args: argparse.Namespace):
    """The ids to redrive, or the filters selecting them: exactly one of the two ways."""
    narrowing = [f"--{n}" for n in ("stage", "code", "since") if getattr(args, n) is not None]
    if args.ids:
        if args.tenant or narrowing:
            raise UsageError("give dead letter IDs or --tenant (with filters), not both")
        return list(args.ids)
    if not args.tenant:
        raise UsageError("give dead letter IDs, or --tenant ID to redrive a tenant's letters")
    return list_filters(args)


def table(letters: list[dict]) -> str:
    lines = [f"{'dead at (UTC)':19}  {'id':36}  {'stage':13}  {'code':22}  redriven  reason"]
    for v in letters:
        at = datetime.fromisoformat(v["dead_at"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        redriven = str(v["redrive_count"]) + "x" if v["redrive_count"] else "-"
        reason = " ".join(v["reason"].split())[:70]
        lines.append(
            f"{at:19}  {v['id']:36}  {v['stage']:13}  {v['code']:22}  {redriven:8}  {reason}"
        )
    return "\n".join(lines)


async def run_command(settings: Settings, args: argparse.Namespace) -> tuple[int, dict]:
    """Run one parsed `kopilka dead-letters` command: (exit status, what to print)."""
    from kopilka.core.kafka import make_producer
    from kopilka.directory.dead_letters import DeadLetterStore
    from kopilka.directory.redrive import redrive_ids, redrive_matching

    target = redrive_target(args) if args.dl_action == "redrive" else None
    filters = list_filters(args) if args.dl_action == "list" else None
    dsn = settings.database_url.get_secret_value()
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    store = DeadLetterStore(pool)
    try:
        if args.dl_action == "list":
            found, cursor = await store.list(filters, args.limit)
            return 0, {"dead_letters": [dl.view() for dl in found], "next": cursor}
        if args.dl_action == "show":
            dl = await store.get(args.id)
            if dl is None:
                return 1, {"error": "dead_letter_not_found", "id": args.id}
            return 0, dl.view(full=True)
        producer = make_producer(settings)
        await producer.start()
        try:
            how = {"force": args.force, "dry_run": args.dry_run}
            if isinstance(target, list):
                report = await redrive_ids(store, producer, target, **how)
            else:
                report = await redrive_matching(store, producer, target, **how)
        finally:
            await producer.stop()
        return (1 if report.failed or report.not_found else 0), report.view()
    finally:
        await pool.close()


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        status, result = asyncio.run(run_command(settings, args))
    except UsageError as exc:
        print(f"kopilka dead-letters: {exc}", file=sys.stderr)
        return 2
    if args.dl_action == "list" and not args.json:
        print(table(result["dead_letters"]))
        if result["next"]:
            print(f"(more: --before {result['next']})")
        return status
    not_found = status and args.dl_action == "show"
    print(json.dumps(result, indent=2, ensure_ascii=False), file=sys.stderr if not_found else None)
    return status
