"""What every benchmark here shares: a fresh stack, a bench shop, waiting for awards in Postgres."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from kopilka.cli.main import create_tenant_json, edge_json
from kopilka.core.settings import Settings
from kopilka.devstack import devservices
from kopilka.devstack.devservices import ManagedProcess
from kopilka.devstack.stack import Stack

# a shop's own rate limit, high enough never to refuse a benchmark request
UNLIMITED = {"rate_limit_per_minute": 100_000_000, "rate_limit_burst": 1_000_000}
WORKER_READY = b"Worker]: Ready"


def start_stack(
    name: str = "bench", *, worker: bool = True, ingest: bool = True, env: dict | None = None
) -> Stack:
    """A fresh stack in .data/<name>: its own data, free ports, durable Postgres (as `make run`)."""
    # each worker's tables (RocksDB) go to workers/<name>/ under data_dir: Stack.start_worker
    stack = Stack.fresh(
        name, {"KOPILKA_HTTP_PORT": str(devservices.free_port()), **(env or {})}, durable=True
    )
    try:
        stack.start_services()
        if worker:
            stack.start_worker()
        if ingest:
            stack.start_ingest()
    except BaseException:
        stack.stop()
        raise
    return stack


def start_worker(stack: Stack, name: str, wait_ready: bool = True) -> ManagedProcess:
    """One more worker process (`name` = its log's name) with its own table folder (two workers
    cannot share one): `Stack.start_worker(name=...)` when the stack has it, else spawned the
    way the stack spawns its worker."""
    if "name" in inspect.signature(stack.start_worker).parameters:
        return stack.start_worker(name=name, wait_ready=wait_ready)
    log_path = stack.data_dir / "logs" / f"{name}.log"
    env = {"KOPILKA_WORKER_DATA_DIR": str(stack.data_dir / "workers" / name)}
    proc = stack._spawn_kopilka("worker", log_path, env)
    if wait_ready:
        stack._wait_for_log(proc, WORKER_READY, 120, f"{name} reporting Ready")
    return proc


def tables_dir(proc: ManagedProcess) -> Path:
    """Where this running worker keeps its table state: the KOPILKA_WORKER_DATA_DIR it was
    started with (read from /proc, so it is the folder the process uses, whoever chose it), else
    the worker's default, `.data/worker/` under its working directory (streams/app.py)."""
    pid = proc.proc.pid
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        name, _, value = item.partition(b"=")
        if name == b"KOPILKA_WORKER_DATA_DIR" and value:
            return Path(os.fsdecode(value))
    return Path(os.readlink(f"/proc/{pid}/cwd")) / ".data" / "worker"


def store_memory_mb(proc: ManagedProcess) -> dict[str, float]:
    """The worker's RocksDB memory from its /metrics (`kopilka_table_store_memory_bytes`, summed
    over tables), MiB by kind (memtables, block_cache); {} when it has no metrics port or has not
    sampled yet (every KOPILKA_METRICS_SAMPLE_INTERVAL_S)."""
    port = proc.extra.get("metrics_port")
    if not port:
        return {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    memory: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "kopilka_table_store_memory_bytes":
            for sample in family.samples:
                kind = sample.labels["kind"]
                memory[kind] = memory.get(kind, 0.0) + sample.value / 2**20
    return {kind: round(mb, 1) for kind, mb in memory.items()}


def size_mb(folder: Path) -> float:
    """Bytes of the files under `folder` (0 when it does not exist), MiB."""
    files = (p for p in folder.rglob("*") if p.is_file()) if folder.exists() else ()
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


def workers(stack: Stack) -> list[ManagedProcess]:
    return [p for p in stack.processes if p.name.startswith("worker") and p.alive()]


def pids(procs: list[ManagedProcess]) -> list[int]:
    return [p.proc.pid for p in procs]


def stop(stack: Stack, proc: ManagedProcess) -> None:
    """Stop one process of the stack (SIGTERM, as a deploy would) and forget it."""
    proc.stop()
    stack.processes.remove(proc)


@dataclass
class Shop:
    tenant_id: str
    path: str  # the webhook path, secret included
    signing_secret: str
    dsn: str

    async def awards(self, conn: asyncpg.Connection) -> int:
        return await conn.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND type = 'bonus_awarded'",
            uuid.UUID(self.tenant_id),
        )

    async def wait_for_awards(
        self, expected: int, timeout_s: float, poll_s: float = 0.1
    ) -> tuple[int, float]:
        """Poll until the shop has `expected` awards in Postgres: (count, perf_counter then)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            deadline = time.perf_counter() + timeout_s
            while True:
                count = await self.awards(conn)
                now = time.perf_counter()
                if count >= expected or now > deadline:
                    return count, now
                await asyncio.sleep(poll_s)
        finally:
            await conn.close()


async def new_shop(dsn: str, name: str, **edge) -> Shop:
    """A tenant with the default rules, never rate-limited; `edge` sets more edge settings."""
    tenant = await create_tenant_json(Settings(DATABASE_URL=dsn), name=name)
    await edge_json(dsn, tenant["tenant_id"], **UNLIMITED, **edge)
    path = f"/api/webhook/{tenant['webhook_secret']}"
    return Shop(tenant["tenant_id"], path, tenant["signing_secret"], dsn)
