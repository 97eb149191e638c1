"""The whole local stack in one place: what `make run` starts, and what the test session starts.

Kafka, Postgres and Redis are started only when `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` /
`REDIS_URL` are not set;
then the migrations are applied, the topics created, and the ingress and the stream worker run as
child processes. `stop()` ends everything it started, newest first.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kopilka import db, devservices, rules_feed
from kopilka.devservices import ManagedProcess, ServiceStartError
from kopilka.kafka import ensure_topics, make_producer
from kopilka.settings import Settings


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
    kafka_heap: str = "512m"
    out: callable = print

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
        self.env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.extra["bootstrap"]
        self.out(
            f"kafka {devservices.KAFKA_VERSION} up at {kafka.extra['bootstrap']} "
            f"({time.monotonic() - t0:.1f}s)"
        )
        return kafka

    def start_postgres(self) -> ManagedProcess:
        t0 = time.monotonic()
        pg = devservices.start_postgres(
            devservices.postgres_datadir(self.data_dir.name + "-postgres"),
            self.postgres_port,
            log_path=self.data_dir / "postgres.log",
            durable=self.durable,
        )
        self.processes.insert(0, pg)
        self.env["DATABASE_URL"] = pg.extra["dsn"]
        self.out(f"postgres up at 127.0.0.1:{self.postgres_port} ({time.monotonic() - t0:.1f}s)")
        return pg

    def start_redis(self) -> ManagedProcess:
        t0 = time.monotonic()
        redis = devservices.start_redis(self.data_dir / "redis", self.redis_port)
        self.processes.insert(0, redis)
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

        devservices.wait_until(healthy, proc, 60, f"answering {url}")
        return proc

    def start_worker(self, log_path: Path | None = None, wait_ready: bool = True) -> ManagedProcess:
        proc = self._spawn_kopilka("worker", log_path)
        if wait_ready:
            self._wait_for_log(proc, b"Worker]: Ready", 90, "the Faust worker reporting Ready")
        return proc

    def start_dispatch(self, log_path: Path | None = None) -> ManagedProcess:
        """`kopilka dispatch`: outbound webhooks and Telegram notifications."""
        proc = self._spawn_kopilka("dispatch", log_path)
        self._wait_for_log(proc, b"dispatch_ready", 60, "the dispatcher reporting dispatch_ready")
        return proc

    @staticmethod
    def _wait_for_log(proc: ManagedProcess, marker: bytes, timeout_s: float, what: str) -> None:
        """Wait until the process's log (written from its start) shows `marker`."""
        if proc.log_path.name == "-":
            return

        def ready() -> bool:
            with open(proc.log_path, "rb") as f:
                f.seek(proc.log_start)
                return marker in f.read()

        devservices.wait_until(ready, proc, timeout_s, what)

    def _spawn_kopilka(
        self, command: str, log_path: Path | None, env: dict[str, str] | None = None
    ) -> ManagedProcess:
        log_path = log_path or self.data_dir / "logs" / f"{command}.log"
        metrics_var = _METRICS_PORT_VARS.get(command)  # each process its own /metrics port
        if metrics_var and metrics_var not in (env or {}):
            env = {**(env or {}), metrics_var: str(devservices.free_port())}
        env = {**self.child_env(), **(env or {})}
        proc = devservices.spawn(
            command,
            [sys.executable, "-m", "kopilka", command],
            log_path,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )
        if metrics_var:
            proc.extra["metrics_port"] = int(env[metrics_var])
        self.processes.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.processes):
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
