"""`kopilka`: the command line.

kopilka run                     the whole local stack (what `make run` calls)
kopilka ingest | worker         one process of the pipeline
kopilka migrate                 apply database migrations
kopilka tenants create --name N [--base-percent 5] [--bonus-ttl-days 365] [--phone-region RU]
kopilka tenants edge ID [--signatures off|optional|required] [--rate-limit N] [--rate-burst N]
                        [--max-body-bytes N]     show / change the edge settings ("default" resets)
kopilka tenants rotate-secret ID [--grace 24h] [--only webhook-secret|api-key|signing-secret]
kopilka schemas write           regenerate schemas/json/ from the event models
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import time
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

from kopilka import db
from kopilka import logging as klog
from kopilka.settings import PROJECT_ROOT, get_settings


def _percent(value: str) -> Decimal:
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from exc
    if not (0 <= result <= 100):
        raise argparse.ArgumentTypeError("must be between 0 and 100")
    return result


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of days, at least 1")
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kopilka", description="Kopilka loyalty-bonus engine")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the whole local stack (Kafka, Postgres, ingest, worker)")
    sub.add_parser("ingest", help="run the HTTP ingress")
    sub.add_parser("worker", help="run the Faust stream worker")
    sub.add_parser("migrate", help="apply database migrations")
    tenants = sub.add_parser("tenants", help="manage tenants").add_subparsers(
        dest="tenants_command", required=True
    )
    create = tenants.add_parser("create", help="create a tenant; prints its credentials once")
    create.add_argument("--name", required=True)
    create.add_argument("--base-percent", type=_percent, default=Decimal(5))
    create.add_argument("--bonus-ttl-days", type=_positive_int, default=365)
    create.add_argument("--phone-region", default="RU", help="default region for phone numbers")
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
    return p


async def create_tenant_json(
    dsn: str, *, name: str, base_percent: Decimal, bonus_ttl_days: int, phone_region: str = "RU"
) -> dict:
    from kopilka.tenants import create_tenant

    settings = get_settings()
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        new = await create_tenant(
            pool,
            name=name,
            base_percent=base_percent,
            bonus_ttl_days=bonus_ttl_days,
            phone_region=phone_region,
        )
    finally:
        await pool.close()
    return {
        "tenant_id": new.tenant.id,
        "name": new.tenant.name,
        "base_percent": str(new.tenant.base_percent),
        "bonus_ttl_days": new.tenant.bonus_ttl_days,
        "webhook_secret": new.webhook_secret,
        "webhook_url": settings.webhook_base_url + new.webhook_secret,
        "api_key": new.api_key,
        "signing_secret": new.signing_secret,
        "signature_mode": new.tenant.signature_mode,
        "note": "the webhook secret, API key and signing secret are shown only this once; "
        "store them now",
    }


async def _with_pool(dsn: str, work):
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        return await work(pool)
    finally:
        await pool.close()


async def edge_json(dsn: str, tenant_id: str, **changes) -> dict:
    """Show a tenant's edge settings after applying `changes` (None = default)."""
    from kopilka.tenants import set_edge

    tenant = await _with_pool(dsn, lambda pool: set_edge(pool, tenant_id, **changes))
    if tenant is None:
        raise SystemExit(f"kopilka: no tenant {tenant_id}")
    return {"tenant_id": tenant.id, **tenant.edge()}


async def rotate_json(dsn: str, tenant_id: str, *, grace: timedelta, only=None) -> dict:
    from kopilka.tenants import ROTATABLE, rotate

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


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = get_settings()
    klog.configure(settings.log_level, settings.log_format)
    if args.command == "ingest":
        from ingest.app import run

        run(settings)
    elif args.command == "worker":
        from streams.worker import run

        run()
    elif args.command == "migrate":
        applied = asyncio.run(db.migrate(settings.database_url.get_secret_value()))
        print(json.dumps({"applied": applied}))
    elif args.command == "tenants":
        print(json.dumps(asyncio.run(_tenants(args, settings)), indent=2, ensure_ascii=False))
    elif args.command == "schemas":
        from schemas.events import write_schemas

        for path in write_schemas():
            print(path.relative_to(PROJECT_ROOT))
    elif args.command == "run":
        sys.exit(run_local())


async def _tenants(args: argparse.Namespace, settings) -> dict:
    dsn = settings.database_url.get_secret_value()
    if args.tenants_command == "edge":
        options = {
            "signatures": "signature_mode",
            "rate_limit": "rate_limit_per_minute",
            "rate_burst": "rate_limit_burst",
            "max_body_bytes": "max_body_bytes",
        }
        changes = {col: getattr(args, opt) for opt, col in options.items() if hasattr(args, opt)}
        return await edge_json(dsn, args.tenant_id, **changes)
    if args.tenants_command == "rotate-secret":
        return await rotate_json(dsn, args.tenant_id, grace=args.grace, only=args.only)
    return await create_tenant_json(
        dsn,
        name=args.name,
        base_percent=args.base_percent,
        bonus_ttl_days=args.bonus_ttl_days,
        phone_region=args.phone_region,
    )


def run_local() -> int:
    """`make run`: start what is missing, print where to send webhooks, run until Ctrl-C."""
    import os

    from kopilka.devservices import ServiceStartError
    from kopilka.stack import Stack

    started = time.monotonic()
    stack = Stack(
        PROJECT_ROOT / ".data" / "dev",
        env={
            k: os.environ[k]
            for k in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
            if os.environ.get(k)
        },
    )
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start_services()
        settings = stack.settings()
        demo = _demo_tenant(stack, settings)
        stack.start_worker()
        stack.start_ingest()
    except ServiceStartError as exc:
        print(f"\nkopilka: a service did not start: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    _print_banner(settings, demo, time.monotonic() - started, stack)
    try:
        while not stopping:
            for proc in stack.processes:
                if not proc.alive():
                    print(
                        f"\nkopilka: {proc.name} exited ({proc.proc.returncode}); "
                        f"last lines of {proc.log_path}:\n{proc.log_tail()}",
                        file=sys.stderr,
                    )
                    stack.stop()
                    return 1
            time.sleep(0.5)
    finally:
        print("\nstopping ...", file=sys.stderr)
        stack.stop()
    return 0


def _demo_tenant(stack, settings) -> dict:
    """The demo shop's credentials: created on the first start, kept in .data/ for the next."""
    path: Path = stack.data_dir / "demo-tenant.json"
    dsn = settings.database_url.get_secret_value()
    if path.exists():
        demo = json.loads(path.read_text())

        async def exists() -> bool:
            from kopilka.tenants import tenant_by_secret

            pool = await db.create_pool(dsn, min_size=1, max_size=1)
            try:
                return await tenant_by_secret(pool, demo["webhook_secret"]) is not None
            finally:
                await pool.close()

        if asyncio.run(exists()):
            demo["webhook_url"] = settings.webhook_base_url + demo["webhook_secret"]
            return demo
    demo = asyncio.run(
        create_tenant_json(dsn, name="Demo shop", base_percent=Decimal(5), bonus_ttl_days=365)
    )
    stack.write_json(path, demo)
    return demo


def _where(dsn: str, default_port: int = 5432) -> str:
    """host:port/db of a database URL, without its credentials."""
    url = urlsplit(dsn)
    return f"{url.hostname}:{url.port or default_port}{url.path}"


def _print_banner(settings, demo: dict, elapsed: float, stack) -> None:
    base = f"http://{settings.http_host}:{settings.http_port}"
    print(
        f"""
Kopilka is running ({elapsed:.1f}s). Ctrl-C stops everything it started.

  Webhook URL (demo shop): {demo["webhook_url"]}
  Read API key:            {demo["api_key"]}
  Signing secret:          {demo.get("signing_secret", "(rotate to get one)")}
  Read API:                {base}/api/v1/customers?email=...
  Health / metrics:        {base}/readyz  {base}/metrics
  Kafka:                   {stack.env["KAFKA_BOOTSTRAP_SERVERS"]}
  Postgres:                {_where(stack.settings().database_url.get_secret_value())}
  Redis:                   {_where(stack.env["REDIS_URL"], 6379)}
  API docs:                {base}/api/docs  (OpenAPI: {base}/api/openapi.json)
  Logs:                    {stack.data_dir / "logs"}/
  Demo credentials kept in {stack.data_dir / "demo-tenant.json"}
""",
        flush=True,
    )
