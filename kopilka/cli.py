"""`kopilka`: the command line.

kopilka run                     the whole local stack (what `make run` calls)
kopilka ingest | worker         one process of the pipeline
kopilka migrate                 apply database migrations
kopilka tenants create --name N [--base-percent 5] [--bonus-ttl-days 365] [--phone-region RU]
kopilka schemas write           regenerate schemas/json/ from the event models
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

from kopilka import cli_outbound, db
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
    schemas = sub.add_parser("schemas", help="event JSON Schemas").add_subparsers(
        dest="schemas_command", required=True
    )
    schemas.add_parser("write", help="regenerate schemas/json/ from the models")
    cli_outbound.add_parsers(sub)
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
        "note": "the webhook secret and API key are shown only this once; store them now",
    }


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
        result = asyncio.run(
            create_tenant_json(
                settings.database_url.get_secret_value(),
                name=args.name,
                base_percent=args.base_percent,
                bonus_ttl_days=args.bonus_ttl_days,
                phone_region=args.phone_region,
            )
        )
        print(json.dumps(result, indent=2, ensure_ascii=False))
    elif args.command == "schemas":
        from schemas.events import write_schemas

        for path in write_schemas():
            print(path.relative_to(PROJECT_ROOT))
    elif args.command == "run":
        sys.exit(run_local())
    elif args.command in cli_outbound.COMMANDS:
        sys.exit(cli_outbound.main(args, settings))


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
            for k in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
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
        stack.start_dispatch()
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


def _where(dsn: str) -> str:
    """host:port/db of a database URL, without its credentials."""
    url = urlsplit(dsn)
    return f"{url.hostname}:{url.port or 5432}{url.path}"


def _print_banner(settings, demo: dict, elapsed: float, stack) -> None:
    base = f"http://{settings.http_host}:{settings.http_port}"
    print(
        f"""
Kopilka is running ({elapsed:.1f}s). Ctrl-C stops everything it started.

  Webhook URL (demo shop): {demo["webhook_url"]}
  Read API key:            {demo["api_key"]}
  Read API:                {base}/api/v1/customers?email=...
  Health / metrics:        {base}/readyz  {base}/metrics
  Kafka:                   {stack.env["KAFKA_BOOTSTRAP_SERVERS"]}
  Postgres:                {_where(stack.settings().database_url.get_secret_value())}
  Logs:                    {stack.data_dir / "logs"}/
  Demo credentials kept in {stack.data_dir / "demo-tenant.json"}
""",
        flush=True,
    )
