"""`kopilka run` (what `make run` calls): the whole local stack, supervised, until Ctrl-C.

Starts what is missing (Kafka, Postgres, Redis unless configured), the demo shop, N stream
workers, the ingress and the dispatcher; prints where to send webhooks and where every process
logs; then restarts whatever dies (kopilka.devstack.supervisor) until Ctrl-C / SIGTERM stops
everything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from kopilka.core import db
from kopilka.core.settings import PROJECT_ROOT

DEFAULT_DATA_DIR = PROJECT_ROOT / ".data" / "dev"


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("must be a whole number, at least 1")
    return int(value)


def _port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError("must be a TCP port, 1-65535")
    return int(value)


def add_parser(sub) -> None:
    run = sub.add_parser(
        "run", help="start the whole local stack (Kafka, Postgres, Redis, ingest, workers)"
    )
    run.add_argument("--workers", type=_count, default=1, help="stream worker processes (1)")
    run.add_argument(
        "--ingress-procs",
        type=_count,
        help="ingress processes on the one HTTP port (default: KOPILKA_INGRESS_PROCS or 1)",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="where data, logs and the demo shop's credentials are kept (.data/dev)",
    )
    g = run.add_argument_group("ports (loopback) of what `kopilka run` starts")
    g.add_argument("--http-port", type=_port, help="the ingress (default: KOPILKA_HTTP_PORT)")
    g.add_argument("--kafka-port", type=_port, default=9092)
    g.add_argument("--kafka-controller-port", type=_port, default=9093)
    g.add_argument("--postgres-port", type=_port, default=5433)
    g.add_argument("--redis-port", type=_port, default=6380)


def make_stack(args: argparse.Namespace):
    from kopilka.devstack import devservices
    from kopilka.devstack.stack import Stack

    data_dir = args.data_dir.resolve()
    stack = Stack(
        data_dir,
        env={
            k: os.environ[k]
            for k in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
            if os.environ.get(k)
        },
        kafka_port=args.kafka_port,
        kafka_controller_port=args.kafka_controller_port,
        postgres_port=args.postgres_port,
        redis_port=args.redis_port,
        # .data/dev keeps its Postgres where it always was; any other data dir holds its own
        postgres_dir=None
        if data_dir == DEFAULT_DATA_DIR
        else devservices.postgres_datadir_for(data_dir),
    )
    if args.http_port:
        stack.env["KOPILKA_HTTP_PORT"] = str(args.http_port)
    if getattr(args, "ingress_procs", None):
        stack.env["KOPILKA_INGRESS_PROCS"] = str(args.ingress_procs)
    return stack


def run_local(args: argparse.Namespace) -> int:
    """Start what is missing, print where to send webhooks, supervise until Ctrl-C."""
    from kopilka.devstack.devservices import ServiceStartError
    from kopilka.devstack.supervisor import Supervisor

    started = time.monotonic()
    stack = make_stack(args)
    if not os.environ.get("KOPILKA_ADMIN_TOKEN"):
        stack.env["KOPILKA_ADMIN_TOKEN"] = _dev_admin_token(stack)
    supervisor = Supervisor(stack.restart)
    stopping = False
    starting = True

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True
        # a start or restart may wait minutes for its child: cut it short (the wait stops the
        # half-started child); otherwise the supervision loop sees `stopping` within a tick
        if starting or supervisor.restarting:
            raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        stack.start_services()
        settings = stack.settings()
        demo = _demo_tenant(stack, settings)
        stack.start_workers(args.workers)
        stack.start_ingest()
        stack.start_dispatch()
        starting = False
    except ServiceStartError as exc:
        starting = False
        print(f"\nkopilka: a service did not start: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM while starting
        starting = False  # a second Ctrl-C must not cut the stopping short
        print("\nstopping ...", file=sys.stderr, flush=True)
        stack.stop()
        return 130
    except BaseException:  # anything else: still stop what was started, then show it
        starting = False
        stack.stop()
        raise
    for proc in stack.processes:
        supervisor.watch(proc.name, proc)
    _print_banner(settings, demo, time.monotonic() - started, stack, supervisor)
    try:
        supervisor.run(lambda: stopping)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping ...", file=sys.stderr, flush=True)
        supervisor.stop()
        stack.stop()
    return 0


def _demo_tenant(stack, settings) -> dict:
    """The demo shop's credentials: created on the first start, kept in the data dir."""
    from kopilka.cli.main import create_tenant_json

    path: Path = stack.data_dir / "demo-tenant.json"
    dsn = settings.database_url.get_secret_value()
    if path.exists():
        demo = json.loads(path.read_text())

        async def exists() -> bool:
            from kopilka.directory.tenants import tenant_by_secret

            pool = await db.create_pool(dsn, min_size=1, max_size=1)
            try:
                return await tenant_by_secret(pool, demo["webhook_secret"]) is not None
            finally:
                await pool.close()

        if asyncio.run(exists()):
            demo["webhook_url"] = settings.webhook_base_url + demo["webhook_secret"]
            return demo
    demo = asyncio.run(create_tenant_json(settings, name="Demo shop"))
    stack.write_json(path, demo)
    return demo


def _dev_admin_token(stack) -> str:
    """A local admin token for `make run`, kept in the data dir (0600) across restarts."""
    import secrets

    path: Path = stack.data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    stack.data_dir.mkdir(parents=True, exist_ok=True)
    token = "adm_" + secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _where(dsn: str, default_port: int = 5432) -> str:
    """host:port/db of a database URL, without its credentials."""
    url = urlsplit(dsn)
    return f"{url.hostname}:{url.port or default_port}{url.path}"


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def process_lines(stack) -> list[str]:
    """One line per process the stack started: name, pid, log, and its /metrics if any."""
    width = max((len(p.name) for p in stack.processes), default=0)

    def metrics(p) -> str:
        port = p.extra.get("metrics_port")
        return f"  metrics http://127.0.0.1:{port}/metrics" if port else ""

    return [
        f"{p.name:<{width}}  pid {p.pid:<7}  {_shown(p.log_path)}{metrics(p)}"
        for p in stack.processes
    ]


def _print_banner(settings, demo: dict, elapsed: float, stack, supervisor) -> None:
    base = f"http://{settings.http_host}:{settings.http_port}"
    b = supervisor.backoff
    processes = "\n".join(f"    {line}" for line in process_lines(stack))
    print(
        f"""
Kopilka is running ({elapsed:.1f}s). Ctrl-C stops everything it started.

  Webhook URL (demo shop): {demo["webhook_url"]}
  Read API key:            {demo["api_key"]}
  Signing secret:          {demo.get("signing_secret", "(rotate to get one)")}
  Read API:                {base}/api/v1/customers?email=...
  Health / metrics:        {base}/readyz  {base}/metrics  (workers, dispatch: below)
  Kafka:                   {stack.env["KAFKA_BOOTSTRAP_SERVERS"]}
  Postgres:                {_where(stack.settings().database_url.get_secret_value())}
  Redis:                   {_where(stack.env["REDIS_URL"], 6379)}
  API docs:                {base}/api/docs  (OpenAPI: {base}/api/openapi.json)
  Admin API:               {base}/api/admin/  (token in {_shown(stack.data_dir / "admin-token")})
  Demo credentials kept in {_shown(stack.data_dir / "demo-tenant.json")}

  Processes (one that dies is restarted after {b.initial_s:g}s, doubling to {b.max_s:g}s;
  every exit and restart is a log line here):
{processes}
""",
        flush=True,
    )
