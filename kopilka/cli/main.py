"""`kopilka`: the command line. `kopilka --help` lists every command and subcommand (generated
from the parsers registered here and in the other modules of kopilka/cli/: kopilka/cli/help.py);
`kopilka COMMAND --help` gives each one's options. Tenant rule options, for reference:
  --base-percent 5 --level NAME:MIN_SPEND:PERCENT (repeat; --no-levels clears)
  --referral-percent 3 --referral-mode first_purchase|every_purchase
  --bonus-ttl-days 365 --hold-days 0 --max-spend-percent 100
  --rounding floor|half_up --phone-region RU --timezone Europe/Moscow
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from kopilka.cli import dead_letters as cli_dead_letters
from kopilka.cli import help as cli_help
from kopilka.cli import outbound as cli_outbound
from kopilka.cli import reconcile, run_local
from kopilka.cli import replay as cli_replay
from kopilka.core import db
from kopilka.core import logging as klog
from kopilka.core.settings import PROJECT_ROOT, get_settings


def _percent(value: str) -> Decimal:
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from exc
    if not (0 <= result <= 100):
        raise argparse.ArgumentTypeError("must be between 0 and 100")
    return result


def _days(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError("must be a whole number of days")
    return int(value)


def _count_or_default(value: str) -> int | None:
    """A positive whole number, or `default` (None: the deployment's setting)."""
    if value == "default":
        return None
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("must be a whole number, at least 1, or 'default'")
    return int(value)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: str) -> timedelta:
    """`0`, `90s`, `30m`, `24h`, `7d`."""
    match = re.fullmatch(r"(\d+)([smhd]?)", value.strip())
    if not match:
        raise argparse.ArgumentTypeError("a duration like 0, 90s, 30m, 24h or 7d")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2] or "s"])


def _level(value: str) -> dict:
    name, _, rest = value.rpartition(":")
    name, _, spend = name.rpartition(":")
    if not name or not spend or not rest:
        raise argparse.ArgumentTypeError("a level is NAME:MIN_LIFETIME_SPEND:BONUS_PERCENT")
    return {"name": name, "min_lifetime_spend": spend, "bonus_percent": rest}


def _rule_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("loyalty rules (unset ones keep their value / default)")
    g.add_argument("--base-percent", type=_percent)
    g.add_argument("--level", dest="levels", action="append", type=_level, metavar="N:MIN:PCT")
    g.add_argument("--no-levels", action="store_true", help="remove every level")
    g.add_argument("--referral-percent", type=_percent)
    g.add_argument("--referral-mode", choices=["first_purchase", "every_purchase"])
    g.add_argument("--bonus-ttl-days", type=_days)
    g.add_argument("--hold-days", type=_days)
    g.add_argument("--max-spend-percent", type=_percent)
    g.add_argument("--rounding", choices=["floor", "half_up"])
    g.add_argument("--phone-region", help="default region for phone numbers, e.g. RU")
    g.add_argument("--timezone", help="IANA time zone, e.g. Europe/Moscow")


_RULE_FIELDS = (
    "base_percent",
    "levels",
    "referral_percent",
    "referral_mode",
    "bonus_ttl_days",
    "hold_days",
    "max_spend_percent",
    "rounding",
    "phone_region",
    "timezone",
)


def _rule_changes(args: argparse.Namespace) -> dict:
    changes = {f: getattr(args, f) for f in _RULE_FIELDS if getattr(args, f) is not None}
    if args.no_levels:
        changes["levels"] = []
    return changes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kopilka",
        usage="%(prog)s [-h] COMMAND [ARGS ...]",
        description="Kopilka loyalty-bonus engine",
    )
    # the commands are listed once, one line each, in the epilog (kopilka/cli/help.py)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS)
    run_local.add_parser(sub)
    ingest = sub.add_parser("ingest", aliases=["ingress"], help="run the HTTP ingress")
    ingest.add_argument(
        "--procs",
        type=run_local._count,
        default=None,
        help="processes sharing the HTTP port (SO_REUSEPORT); default KOPILKA_INGRESS_PROCS or 1",
    )
    sub.add_parser("worker", help="run the Faust stream worker")
    sub.add_parser("migrate", help="apply database migrations")
    tenants = sub.add_parser("tenants", help="manage tenants").add_subparsers(
        dest="tenants_command", required=True
    )
    create = tenants.add_parser("create", help="create a tenant; prints its credentials once")
    create.add_argument("--name", required=True)
    _rule_options(create)
    update = tenants.add_parser("update", help="change a tenant's loyalty rules")
    update.add_argument("tenant_id")
    _rule_options(update)
    show = tenants.add_parser("show", help="a tenant and its rules")
    show.add_argument("tenant_id")
    tenants.add_parser("publish-rules", help="re-send every tenant's rules to the workers")
    edge = tenants.add_parser("edge", help="show or change a tenant's edge settings")
    edge.add_argument("tenant_id")
    unset = argparse.SUPPRESS  # an option left out keeps the tenant's current value
    edge.add_argument("--signatures", choices=("off", "optional", "required"), default=unset)
    edge.add_argument("--rate-limit", type=_count_or_default, default=unset, help="per minute")
    edge.add_argument("--rate-burst", type=_count_or_default, default=unset, help="at once")
    edge.add_argument("--max-body-bytes", type=_count_or_default, default=unset, help="body cap")
    rotate = tenants.add_parser(
        "rotate-secret",
        help="issue new credentials; the old ones keep working for the grace period",
    )
    rotate.add_argument("tenant_id")
    rotate.add_argument("--grace", type=_duration, default=timedelta(hours=24))
    rotate.add_argument(
        "--only",
        choices=("webhook-secret", "api-key", "signing-secret"),
        action="append",
        help="rotate only this credential (repeatable); default: all three",
    )
    schemas = sub.add_parser("schemas", help="event JSON Schemas").add_subparsers(
        dest="schemas_command", required=True
    )
    schemas.add_parser("write", help="regenerate schemas/json/ from the models")
    cli_outbound.add_parsers(sub)
    cli_replay.add_parsers(sub)
    cli_dead_letters.add_parsers(sub)
    reconcile.add_parser(sub)
    return cli_help.install(p)


async def tenants_command(settings, args: argparse.Namespace) -> tuple[int, dict]:
    """Run one `kopilka tenants ...` command: (exit status, what to print)."""
    import uuid

    from pydantic import ValidationError

    from kopilka.core.kafka import ensure_topics, make_producer
    from kopilka.directory import rules_feed, tenant_admin
    from schemas.tenant_rules import TenantRules

    dsn = settings.database_url.get_secret_value()
    if args.tenants_command == "edge":
        options = {
            "signatures": "signature_mode",
            "rate_limit": "rate_limit_per_minute",
            "rate_burst": "rate_limit_burst",
            "max_body_bytes": "max_body_bytes",
        }
        changes = {col: getattr(args, opt) for opt, col in options.items() if hasattr(args, opt)}
        return 0, await edge_json(dsn, args.tenant_id, **changes)
    if args.tenants_command == "rotate-secret":
        return 0, await rotate_json(dsn, args.tenant_id, grace=args.grace, only=args.only)
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    producer = None
    try:
        if args.tenants_command == "show":
            try:
                tenant = await tenant_admin.show(pool, str(uuid.UUID(args.tenant_id)))
            except ValueError:
                tenant = None
            if tenant is None:
                return 1, {"error": "tenant_not_found", "tenant_id": args.tenant_id}
            return 0, tenant_admin.tenant_view(tenant)
        await ensure_topics(settings)
        producer = make_producer(settings)
        await producer.start()
        try:
            if args.tenants_command == "create":
                rules = TenantRules.model_validate(_rule_changes(args))
                new = await tenant_admin.create(pool, producer, args.name, rules)
                return 0, tenant_admin.new_tenant_view(new, settings)
            if args.tenants_command == "update":
                try:
                    tenant_id = str(uuid.UUID(args.tenant_id))
                except ValueError:
                    return 1, {"error": "tenant_not_found", "tenant_id": args.tenant_id}
                tenant = await tenant_admin.update(pool, producer, tenant_id, _rule_changes(args))
                if tenant is None:
                    return 1, {"error": "tenant_not_found", "tenant_id": args.tenant_id}
                return 0, tenant_admin.tenant_view(tenant)
            count = await rules_feed.publish_all(pool, producer)
            return 0, {"published": count}
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            return 2, {"error": "invalid_rule", "field": field, "reason": first["msg"]}
    finally:
        if producer is not None:
            await producer.stop()
        await pool.close()


async def _with_pool(dsn: str, work):
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        return await work(pool)
    finally:
        await pool.close()


async def edge_json(dsn: str, tenant_id: str, **changes) -> dict:
    """Show a tenant's edge settings after applying `changes` (None = default)."""
    from kopilka.directory.tenants import set_edge

    tenant = await _with_pool(dsn, lambda pool: set_edge(pool, tenant_id, **changes))
    if tenant is None:
        raise SystemExit(f"kopilka: no tenant {tenant_id}")
    return {"tenant_id": tenant.id, **tenant.edge()}


async def rotate_json(dsn: str, tenant_id: str, *, grace: timedelta, only=None) -> dict:
    from kopilka.directory.tenants import ROTATABLE, rotate

    what = tuple(k.replace("-", "_") for k in only) if only else ROTATABLE
    issued = await _with_pool(dsn, lambda pool: rotate(pool, tenant_id, grace=grace, what=what))
    if issued is None:
        raise SystemExit(f"kopilka: no tenant {tenant_id}")
    result: dict = {"tenant_id": tenant_id, **issued}
    if "webhook_secret" in issued:
        result["webhook_url"] = get_settings().webhook_base_url + issued["webhook_secret"]
    result["old_credentials_valid_for_s"] = int(grace.total_seconds())
    result["note"] = "the new credentials are shown only this once; the old ones stop working "
    result["note"] += "when the grace period ends"
    return result


async def create_tenant_json(settings, *, name: str) -> dict:
    args = argparse.Namespace(tenants_command="create", name=name, no_levels=False)
    for f in _RULE_FIELDS:
        setattr(args, f, None)
    status, result = await tenants_command(settings, args)
    if status:
        raise RuntimeError(result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = get_settings()
    klog.configure(settings.log_level, settings.log_format)
    if args.command in ("ingest", "ingress"):
        from ingest.serve import default_procs, serve

        sys.exit(serve(settings, args.procs or default_procs()))
    elif args.command == "worker":
        from streams.worker import run

        run()
    elif args.command == "migrate":
        applied = asyncio.run(db.migrate(settings.database_url.get_secret_value()))
        print(json.dumps({"applied": applied}))
    elif args.command == "tenants":
        status, result = asyncio.run(tenants_command(settings, args))
        print(json.dumps(result, indent=2, ensure_ascii=False), file=sys.stderr if status else None)
        sys.exit(status)
    elif args.command == "schemas":
        from schemas.events import write_schemas

        for path in write_schemas():
            print(path.relative_to(PROJECT_ROOT))
    elif args.command == "run":
        sys.exit(run_local.run_local(args))
    elif args.command in cli_outbound.COMMANDS:
        sys.exit(cli_outbound.main(args, settings))
    elif args.command in cli_replay.COMMANDS:
        sys.exit(cli_replay.main(args, settings))
    elif args.command in cli_dead_letters.COMMANDS:
        sys.exit(cli_dead_letters.main(args, settings))
    elif args.command == "reconcile":
        sys.exit(reconcile.main(args, settings))
