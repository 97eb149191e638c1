"""The outbound part of the command line: endpoints, deliveries, Telegram, and `dispatch`.

kopilka dispatch                                             the delivery process (and pruning)
kopilka prune [--dry-run]                                    delete rows past their retention
kopilka endpoints add --tenant T --url U [--events a,b]      prints the signing secret
kopilka endpoints list|remove|enable|disable|secret --tenant T [--id E]
kopilka deliveries list --tenant T [--status dead] [--endpoint E]
kopilka deliveries attempts --tenant T --id D
kopilka deliveries redeliver --tenant T [--id D ...] [--endpoint E]   dead-letter -> pending
kopilka telegram add-chat|remove-chat --tenant T --chat C [--events a,b]
kopilka telegram list --tenant T
kopilka telegram template-set --tenant T --type bonus_awarded --text "..."
kopilka telegram template-reset --tenant T --type bonus_awarded
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from kopilka.core import db
from kopilka.core.settings import Settings
from kopilka.directory import retention

COMMANDS = ("dispatch", "prune", "endpoints", "deliveries", "telegram")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("dispatch", help="send outbound webhooks and Telegram notifications")
    retention.add_parser(sub)

    def group(name: str, help_: str) -> argparse._SubParsersAction:
        return sub.add_parser(name, help=help_).add_subparsers(dest="action", required=True)

    def command(parent, name: str, help_: str, *, id_help: str | None = None, many=False):
        p = parent.add_parser(name, help=help_)
        p.add_argument("--tenant", required=True, help="tenant id")
        if id_help:
            p.add_argument(
                "--id", required=not many, action="append" if many else None, help=id_help
            )
        return p

    endpoints = group("endpoints", "a tenant's webhook endpoints (callback URLs)")
    add = command(endpoints, "add", "add an endpoint; prints its signing secret")
    add.add_argument("--url", required=True)
    add.add_argument("--events", default="*", help="comma-separated event types; * = all")
    add.add_argument("--description", default="")
    command(endpoints, "list", "list the tenant's endpoints")
    for name, what in (
        ("remove", "remove an endpoint (its history stays)"),
        ("enable", "enable a disabled endpoint"),
        ("disable", "disable an endpoint; pending deliveries go to the dead-letter store"),
        ("secret", "show an endpoint's signing secret"),
    ):
        command(endpoints, name, what, id_help="endpoint id")

    deliveries = group("deliveries", "outbound webhook deliveries and the dead-letter store")
    lst = command(deliveries, "list", "list deliveries, newest first")
    lst.add_argument("--status", choices=("pending", "succeeded", "dead"))
    lst.add_argument("--endpoint")
    lst.add_argument("--limit", type=int, default=100)
    command(deliveries, "attempts", "every attempt of one delivery", id_help="delivery id")
    redo = command(
        deliveries, "redeliver", "send dead deliveries again", id_help="delivery id", many=True
    )
    redo.add_argument("--endpoint", help="only this endpoint's")

    telegram = group("telegram", "a tenant's Telegram chats and message templates")
    chat = command(telegram, "add-chat", "send the tenant's notifications to a chat")
    chat.add_argument("--chat", type=int, required=True, help="Telegram chat id")
    chat.add_argument("--events", default="*", help="comma-separated event types; * = all")
    rm = command(telegram, "remove-chat", "stop notifying a chat")
    rm.add_argument("--chat", type=int, required=True)
    command(telegram, "list", "the tenant's chats and templates")
    tset = command(telegram, "template-set", "the tenant's own wording for an event type")
    tset.add_argument("--type", required=True)
    tset.add_argument("--text", required=True, help='e.g. "+{bonuses} за {order_id}"')
    treset = command(telegram, "template-reset", "back to the default wording")
    treset.add_argument("--type", required=True)


async def _call(settings: Settings, args: argparse.Namespace):
    from kopilka.directory import subscriptions as s

    dsn = settings.database_url.get_secret_value()
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    t = args.tenant
    try:
        match (args.command, args.action):
            case ("endpoints", "add"):
                return await s.add_endpoint(pool, t, args.url, args.events, args.description)
            case ("endpoints", "list"):
                return await s.list_endpoints(pool, t)
            case ("endpoints", "remove"):
                return {"removed": await s.remove_endpoint(pool, t, args.id)}
            case ("endpoints", "enable" | "disable"):
                on = args.action == "enable"
                return {"changed": await s.set_endpoint_enabled(pool, t, args.id, on)}
            case ("endpoints", "secret"):
                return {"secret": await s.endpoint_secret(pool, t, args.id)}
            case ("deliveries", "list"):
                return await s.list_deliveries(
                    pool, t, status=args.status, endpoint_id=args.endpoint, limit=args.limit
                )
            case ("deliveries", "attempts"):
                return await s.attempts_of(pool, t, args.id)
            case ("deliveries", "redeliver"):
                return await s.redeliver(pool, t, delivery_ids=args.id, endpoint_id=args.endpoint)
            case ("telegram", "add-chat"):
                return await s.add_chat(pool, t, args.chat, args.events)
            case ("telegram", "remove-chat"):
                return {"removed": await s.remove_chat(pool, t, args.chat)}
            case ("telegram", "list"):
                return {
                    "chats": await s.list_chats(pool, t),
                    "templates": await s.list_templates(pool, t),
                }
            case ("telegram", "template-set"):
                return await s.set_template(pool, t, args.type, args.text)
            case ("telegram", "template-reset"):
                return {"removed": await s.remove_template(pool, t, args.type)}
    finally:
        await pool.close()
    raise AssertionError(f"unhandled command {args.command} {args.action}")


def main(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "dispatch":
        from sinks.dispatch import run

        run(settings)
        return 0
    if args.command == "prune":
        report = asyncio.run(retention.prune_command(settings, args.dry_run))
        print(json.dumps(report, indent=2))
        return 0
    from kopilka.directory.subscriptions import InvalidConfig

    try:
        result = asyncio.run(_call(settings, args))
    except InvalidConfig as exc:
        print(
            json.dumps({"error": "invalid", "field": exc.field, "reason": exc.reason}),
            file=sys.stderr,
        )
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0
