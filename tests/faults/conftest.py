"""The fault suite's own stack: a second Kafka, Postgres and Redis, ingress and worker, with its
own data dir and free ports, so that an outage started here can never leak into another test.
It lives for tests/faults/ only (package scope) and is stopped at the end; the session's
environment is restored then, since `Stack.settings()` writes its values into os.environ.

Every test here is `connected` (tests/conftest.py adds the marker) and `disruptive` (each
module's `pytestmark`), so the session runs them after everything else. The fault table (one
line per scenario) is printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys

import aiohttp
import pytest
from harness import TABLE

from kopilka.devstack import devservices
from kopilka.devstack.devservices import ManagedProcess
from kopilka.devstack.stack import Stack

ADMIN_TOKEN = "faults-admin-token"  # a throwaway token for this stack's admin API


class FaultStack:
    """The stack and what a scenario does to it; blocking steps run in a thread so the load
    generator keeps sending meanwhile."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        settings = stack.settings()
        self.base_url = f"http://{settings.http_host}:{settings.http_port}"
        self.dsn = settings.database_url.get_secret_value()
        self.bootstrap = settings.bootstrap_list

    async def make_tenant(self, name: str, rules: dict) -> dict:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.base_url}/api/admin/tenants",
                json={"name": name, "rules": rules},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as resp,
        ):
            body = await resp.json(content_type=None)
        assert resp.status == 201, body
        return body

    async def stop(self, name: str, *, kill: bool = False) -> None:
        await asyncio.to_thread(self.stack.stop_process, name, kill=kill)

    async def start(self, name: str) -> ManagedProcess:
        starter = {
            "postgres": self.stack.start_postgres,
            "redis": self.stack.start_redis,
            "kafka": self.stack.start_kafka,
            "worker": lambda: self.stack.start_worker(wait_ready=True),
        }[name]
        return await asyncio.to_thread(starter)

    async def start_extra_worker(self, name: str, *, wait_ready: bool) -> ManagedProcess:
        """A second worker process in the same consumer group, with its own log (and its own
        state dir once the worker keeps local state)."""
        return await asyncio.to_thread(self._extra_worker, name, wait_ready)

    def _extra_worker(self, name: str, wait_ready: bool) -> ManagedProcess:
        if "name" in inspect.signature(self.stack.start_worker).parameters:
            return self.stack.start_worker(name=name, wait_ready=wait_ready)
        log_path = self.stack.data_dir / "logs" / f"{name}.log"
        env = {"KOPILKA_WORKER_DATA_DIR": str(self.stack.data_dir / "workers" / name)}
        proc = self.stack._spawn_kopilka("worker", log_path, env)
        proc.name = name
        if wait_ready:
            self.stack._wait_for_log(proc, b"Worker]: Ready", 90, f"{name} reporting Ready")
        return proc

    async def heal(self) -> list[str]:
        """Start again whatever an earlier scenario (one that failed half-way) left stopped or
        dead, so one failure does not cascade into the next scenario; extra workers go."""
        healed = []
        for proc in [p for p in self.stack.processes if p.name.startswith("worker-")]:
            await asyncio.to_thread(self.stack.stop_process, proc.name)
            healed.append(f"stopped {proc.name}")
        for name in ("kafka", "postgres", "redis", "worker", "ingest"):
            procs = self.processes(name)
            if procs and all(p.alive() for p in procs):
                continue
            for proc in procs:
                self.stack.processes.remove(proc)
            if name == "ingest":
                await asyncio.to_thread(self.stack.start_ingest)
            else:
                await self.start(name)
            healed.append(f"started {name}")
        return healed

    def processes(self, name: str) -> list[ManagedProcess]:
        return [p for p in self.stack.processes if p.name == name]

    def log_of(self, proc: ManagedProcess) -> bytes:
        with open(proc.log_path, "rb") as f:
            f.seek(proc.log_start)
            return f.read()


@pytest.fixture(scope="package")
def fault_stack():
    saved_env = dict(os.environ)
    env = {
        "KOPILKA_HTTP_PORT": str(devservices.free_port()),
        "KOPILKA_LOG_LEVEL": "DEBUG",  # each request's story, when a figure is not 0
        "KOPILKA_ADMIN_TOKEN": ADMIN_TOKEN,
        "KOPILKA_TENANT_CACHE_TTL_S": "5",
        "KOPILKA_RATE_LIMIT_PER_MINUTE": "1000000",
        # a refund travels on its order's partition, its purchase on the customer's: after a
        # kill the two partitions are replayed in any order, so give the purchase time to land
        "KOPILKA_REFUND_ORDER_WAIT_S": "60",
        # a killed worker's partitions move to a live one after this long
        "KOPILKA_WORKER_SESSION_TIMEOUT_S": "6",
    }
    for key in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"):
        os.environ.pop(key, None)  # this stack starts its own services, always
    s = Stack.fresh(
        "faults", env, durable=False, kafka_heap="384m", out=lambda msg: print(msg, file=sys.stderr)
    )
    try:
        s.start_services()
        s.start_worker(wait_ready=True)
        s.start_ingest()
        yield FaultStack(s)
    finally:
        s.stop()
        os.environ.clear()
        os.environ.update(saved_env)


def pytest_terminal_summary(terminalreporter):
    if TABLE:
        terminalreporter.section("fault table")
        terminalreporter.write_line("scenario | accepted | lost | doubled | drift | recover_s")
        for line in TABLE:
            terminalreporter.write_line(line)


# ------------------------------------------------------------- a three-broker cluster's stack
CLUSTER_BROKERS = 3
CLUSTER_HEAP = "256m"  # per broker (light JVM settings: serial GC, C1 only)


class ClusterFaultStack(FaultStack):
    """The fault stack over a local Kafka cluster: the brokers are `kafka-1` ... `kafka-3`, with
    replication factor 3 and min.insync.replicas 2 for every topic (kopilka.devstack.stack)."""

    async def kill_broker(self, node: int) -> None:
        """kill -9 one broker; it stays down until `restart_broker(node)`."""
        await asyncio.to_thread(self.stack.kill_process, f"kafka-{node}")

    async def restart_broker(self, node: int) -> ManagedProcess:
        """Start a broker again on its ports and data; returns once it serves."""
        return await asyncio.to_thread(self.stack.restart, f"kafka-{node}")

    async def heal(self) -> list[str]:
        healed = []
        for proc in [p for p in self.stack.processes if p.name.startswith("kafka-")]:
            if not proc.alive():
                await self.restart_broker(int(proc.name.removeprefix("kafka-")))
                healed.append(f"restarted {proc.name}")
        for name in ("postgres", "redis", "worker", "ingest"):
            procs = self.processes(name)
            if procs and all(p.alive() for p in procs):
                continue
            for proc in procs:
                self.stack.processes.remove(proc)
            if name == "ingest":
                await asyncio.to_thread(self.stack.start_ingest)
            else:
                await self.start(name)
            healed.append(f"started {name}")
        return healed


@pytest.fixture(scope="module")
def cluster_fault_stack():
    """Its own stack (cluster, Postgres, Redis, ingress, worker) on free ports and its own data
    dir; for the module that uses it only, so it never runs beside the package's fault_stack."""
    saved_env = dict(os.environ)
    env = {
        "KOPILKA_HTTP_PORT": str(devservices.free_port()),
        "KOPILKA_LOG_LEVEL": "DEBUG",  # each request's story, when a figure is not 0
        "KOPILKA_ADMIN_TOKEN": ADMIN_TOKEN,
        "KOPILKA_TENANT_CACHE_TTL_S": "5",
        "KOPILKA_RATE_LIMIT_PER_MINUTE": "1000000",
        "KOPILKA_REFUND_ORDER_WAIT_S": "60",  # as in fault_stack: see there
        "KOPILKA_WORKER_SESSION_TIMEOUT_S": "6",
        "KOPILKA_TOPIC_REPLICATION_FACTOR": str(CLUSTER_BROKERS),
        "KOPILKA_TOPIC_MIN_INSYNC_REPLICAS": "2",
    }
    for key in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"):
        os.environ.pop(key, None)
    s = Stack.fresh(
        "faults-cluster", env, durable=False, out=lambda msg: print(msg, file=sys.stderr)
    )
    try:
        s.start_kafka_cluster(CLUSTER_BROKERS, heap=CLUSTER_HEAP)
        s.start_services()
        s.start_worker(wait_ready=True)
        s.start_ingest()
        yield ClusterFaultStack(s)
    finally:
        s.stop()
        os.environ.clear()
        os.environ.update(saved_env)
