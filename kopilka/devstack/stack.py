"""The whole local stack in one place: what `make run` starts, and what the test session starts.

Kafka, Postgres and Redis are started only when `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` /
`REDIS_URL` are not set;
then the migrations are applied, the topics created, and the ingress, the stream workers (one or
several, each named: `worker`, `worker-2`, ...) and the dispatcher run as child processes.
`restart(name)` starts a dead one again in its place (kopilka.devstack.supervisor uses it);
`stop()` ends everything it started, newest first.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from kopilka.core import db
from kopilka.core.kafka import ensure_topics, make_producer
from kopilka.core.settings import PROJECT_ROOT, Settings
from kopilka.devstack import devservices
from kopilka.devstack.devservices import ManagedProcess, ServiceStartError
from kopilka.directory import rules_feed


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)
    durable: bool = True
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    postgres_port: int = 5433
    redis_port: int = 6380
    # how long a Kopilka process may take to report ready (importing aiogram alone took 45 s on
    # a loaded 2-core machine)
    ready_timeout_s: float = 180.0
    kafka_heap: str = "512m"
    out: callable = print
    postgres_dir: Path | None = None  # default: devservices.postgres_datadir(<name>-postgres)
    kafka_cluster: devservices.KafkaCluster | None = None  # see start_kafka_cluster()
    # how to start each process again, by name: what `restart(name)` calls
    _starters: dict[str, Callable[[], ManagedProcess]] = field(default_factory=dict, repr=False)

    @classmethod
    def fresh(cls, name: str, env: dict[str, str] | None = None, **options) -> Stack:
        """A stack in .data/NAME with nothing left from an earlier one (its data folder and its
        Postgres cluster removed) and every service on a free port, so it can run beside any
        other: what the test sessions, the fault suites and the benchmarks start."""
        data_dir = PROJECT_ROOT / ".data" / name
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(devservices.postgres_datadir(f"{name}-postgres"), ignore_errors=True)
        ports = {
            port: devservices.free_port()
            for port in ("kafka_port", "kafka_controller_port", "postgres_port", "redis_port")
        }
        return cls(data_dir, env=dict(env or {}), **{**ports, **options})

    # -------------------------------------------------------------------- services
    def start_services(self) -> None:
        """Start Kafka, Postgres and Redis unless configured from outside; `env` says where."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.env.get("KAFKA_BOOTSTRAP_SERVERS"):
            self._refuse_taken_port(self.kafka_port, "KAFKA_BOOTSTRAP_SERVERS to use that broker")
            self.start_kafka()
        if not self.env.get("DATABASE_URL"):
            self._refuse_taken_port(self.postgres_port, "DATABASE_URL")
            self.start_postgres()
        if not self.env.get("REDIS_URL"):
            self._refuse_taken_port(self.redis_port, "REDIS_URL")
            self.start_redis()
        asyncio.run(self._prepare(self.settings()))

    @staticmethod
    def _refuse_taken_port(port: int, instead: str) -> None:
        if devservices.port_open(port):
            raise ServiceStartError(f"port {port} is taken: stop what uses it, or set {instead}")

    def start_kafka(self) -> ManagedProcess:
        t0 = time.monotonic()
        kafka = devservices.start_kafka(
            self.data_dir / "kafka",
            self.kafka_port,
            self.kafka_controller_port,
            heap=self.kafka_heap,
            out=self.out,
        )
        self.processes.insert(0, kafka)
        self._starters["kafka"] = self.start_kafka
        self.env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.extra["bootstrap"]
        self.out(
            f"kafka {devservices.KAFKA_VERSION} up at {kafka.extra['bootstrap']} "
            f"({time.monotonic() - t0:.1f}s)"
        )
        return kafka

    def start_kafka_cluster(self, n: int = 3, heap: str = "256m") -> devservices.KafkaCluster:
        """Kafka as an `n`-broker local cluster instead of one broker; call it before
        `start_services()`. Kopilka's topics get replication factor `n` (unless
        KOPILKA_TOPIC_REPLICATION_FACTOR is in `env`) and the brokers' min.insync.replicas 2;
        the brokers are processes `kafka-1` ... `kafka-<n>` (kill_process / restart them), each
        with a `heap` of its own."""
        t0 = time.monotonic()
        cluster = devservices.start_kafka_cluster(
            self.data_dir / "kafka-cluster", n, heap=heap, out=self.out
        )
        for node, proc in enumerate(cluster.brokers, 1):
            self.adopt(proc, partial(cluster.restart, node), service=True)
        self.kafka_cluster = cluster
        self.env["KAFKA_BOOTSTRAP_SERVERS"] = cluster.bootstrap
        self.env.setdefault("KOPILKA_TOPIC_REPLICATION_FACTOR", str(n))
        self.out(f"kafka cluster of {n} up at {cluster.bootstrap} ({time.monotonic() - t0:.1f}s)")
        return cluster

    def start_postgres(self) -> ManagedProcess:
        t0 = time.monotonic()
        pg = devservices.start_postgres(
            self.postgres_dir or devservices.postgres_datadir(self.data_dir.name + "-postgres"),
            self.postgres_port,
            log_path=self.data_dir / "postgres.log",
            durable=self.durable,
        )
        self.processes.insert(0, pg)
        self._starters["postgres"] = self.start_postgres
        self.env["DATABASE_URL"] = pg.extra["dsn"]
        self.out(f"postgres up at 127.0.0.1:{self.postgres_port} ({time.monotonic() - t0:.1f}s)")
        return pg

    def start_redis(self) -> ManagedProcess:
        t0 = time.monotonic()
        redis = devservices.start_redis(self.data_dir / "redis", self.redis_port)
        self.processes.insert(0, redis)
        self._starters["redis"] = self.start_redis
        self.env["REDIS_URL"] = redis.extra["url"]
        self.out(f"redis up at 127.0.0.1:{self.redis_port} ({time.monotonic() - t0:.1f}s)")
        return redis

    def process(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)

    def stop_process(self, name: str, *, kill: bool = False) -> None:
        """Stop (or kill -9) one process of the stack and forget it: for fault tests."""
        proc = self.process(name)
        proc.kill() if kill else proc.stop()
        self.processes.remove(proc)

    def adopt(
        self, proc: ManagedProcess, starter: Callable[[], ManagedProcess], *, service: bool = False
    ) -> None:
        """Make a process started elsewhere part of the stack: stopped with it, and started
        again by `starter()` on `restart(proc.name)`. Services stop after the Kopilka processes."""
        if service:
            self.processes.insert(0, proc)
        else:
            self.processes.append(proc)
        self._starters[proc.name] = starter

    def kill_process(self, name: str) -> ManagedProcess:
        """kill -9 one process but keep it in the stack, as a crash would: a supervisor watching
        the stack then restarts it (`restart(name)`)."""
        proc = self.process(name)
        proc.kill()
        return proc

    def restart(self, name: str) -> ManagedProcess:
        """Start a (dead or live) process of the stack again, the way it was first started, in
        its place in the stop order. Raises ServiceStartError (the old one stays, dead) when the
        new one does not come up."""
        old = self.process(name)
        old.stop(10)
        try:
            new = self._starters[name]()
        finally:  # the starter added its process (or a dead attempt) at either end: take it out
            for proc in [p for p in self.processes if p.name == name and p is not old]:
                self.processes.remove(proc)
        self.processes[self.processes.index(old)] = new
        return new

    @staticmethod
    async def _prepare(settings: Settings) -> None:
        dsn = settings.database_url.get_secret_value()
        await db.wait_for_database(dsn)
        await db.migrate(dsn)
        await ensure_topics(settings)
        # Postgres holds the rules; make sure the workers' topic has every tenant's latest.
        pool = await db.create_pool(dsn, min_size=1, max_size=1)
        producer = make_producer(settings)
        await producer.start()
        try:
            await rules_feed.publish_all(pool, producer)
        finally:
            await producer.stop()
            await pool.close()

    def settings(self) -> Settings:
        """Settings as the child processes will see them (this process's environment + `env`)."""
        os.environ.update(self.env)
        return Settings()

    def child_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}

    # ------------------------------------------------------------------ processes
    def start_ingest(
        self, log_path: Path | None = None, env: dict[str, str] | None = None
    ) -> ManagedProcess:
        """Start an ingress process; `env` overrides settings for this one (e.g. a second
        replica on another KOPILKA_HTTP_PORT)."""
        proc = self._spawn_kopilka("ingest", log_path, env)
        os.environ.update(self.env)
        settings = _settings_with(env or {})
        url = f"http://{settings.http_host}:{settings.http_port}/healthz"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    return resp.status == 200
            except OSError:
                return False

        devservices.wait_until(healthy, proc, self.ready_timeout_s, f"answering {url}")
        self._starters.setdefault("ingest", partial(self.start_ingest, log_path, env))
        return proc

    def start_worker(
        self, name: str = "worker", log_path: Path | None = None, wait_ready: bool = True
    ) -> ManagedProcess:
        """Start a stream worker named `name` (`worker`, `worker-2`, ...): its log is
        logs/<name>.log and its local table state is in workers/<name>/ under the data dir."""
        proc = self._spawn_kopilka(
            "worker",
            log_path,
            {"KOPILKA_WORKER_DATA_DIR": str(self.data_dir / "workers" / name)},
            name=name,
        )
        self._starters[name] = partial(self.start_worker, name, log_path)
        if wait_ready:
            self.wait_for_worker(proc)
        return proc

    def start_workers(self, count: int) -> list[ManagedProcess]:
        """Start `worker-1` ... `worker-<count>` together, then wait until each is ready."""
        procs = [self.start_worker(f"worker-{i}", wait_ready=False) for i in range(1, count + 1)]
        for proc in procs:
            self.wait_for_worker(proc)
        return procs

    def wait_for_worker(self, proc: ManagedProcess) -> None:
        """Until this run of the worker (not an earlier one in the same log) reports Ready."""
        self._wait_for_log(
            proc,
            b"Worker]: Ready",
            self.ready_timeout_s,
            "the Faust worker reporting Ready",
        )

    def start_dispatch(
        self, log_path: Path | None = None, env: dict[str, str] | None = None
    ) -> ManagedProcess:
        """`kopilka dispatch`: outbound webhooks and Telegram notifications; `env` overrides
        settings for this process only (e.g. where the Bot API is)."""
        proc = self._spawn_kopilka("dispatch", log_path, env)
        self._wait_for_log(
            proc, b"dispatch_ready", self.ready_timeout_s, "the dispatcher reporting dispatch_ready"
        )
        self._starters["dispatch"] = partial(self.start_dispatch, log_path, env)
        return proc

    @staticmethod
    def _wait_for_log(proc: ManagedProcess, marker: bytes, timeout_s: float, what: str) -> None:
        """Wait until the process's log (written from its start) shows `marker`."""
        if proc.log_path.name == "-":
            return
        devservices.wait_until(lambda: proc.logged(marker), proc, timeout_s, what)

    def _spawn_kopilka(
        self,
        command: str,
        log_path: Path | None,
        env: dict[str, str] | None = None,
        name: str | None = None,
    ) -> ManagedProcess:
        name = name or command
        log_path = log_path or self.data_dir / "logs" / f"{name}.log"
        metrics_var = _METRICS_PORT_VARS.get(command)  # each process its own /metrics port
        if metrics_var and metrics_var not in (env or {}):
            env = {**(env or {}), metrics_var: str(devservices.free_port())}
        env = {**self.child_env(), **(env or {})}
        proc = devservices.spawn(
            name,
            [sys.executable, "-m", "kopilka", command],
            log_path,
            env=env,
            cwd=Path(__file__).resolve().parents[2],  # the project
        )
        if metrics_var:
            proc.extra["metrics_port"] = int(env[metrics_var])
        self.processes.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if self.kafka_cluster and proc.name.startswith("kafka-"):
                self.kafka_cluster.stop()  # all brokers at once: no quorum wait
            proc.stop()
        self.processes.clear()

    def write_json(self, path: Path, data: dict) -> None:
        """Write credentials readable by the owner only, from the first byte."""
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2))


_METRICS_PORT_VARS = {
    "worker": "KOPILKA_WORKER_METRICS_PORT",
    "dispatch": "KOPILKA_DISPATCH_METRICS_PORT",
}


def _settings_with(env: dict[str, str]) -> Settings:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return Settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
