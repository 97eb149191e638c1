"""The whole local stack in one place: what `make run` starts, and what the test session starts.

Kafka and Postgres are started only when `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` are not set;
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

from kopilka import db, devservices
from kopilka.devservices import ManagedProcess, ServiceStartError
from kopilka.kafka import ensure_topics
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
    kafka_heap: str = "512m"
    out: callable = print

    # -------------------------------------------------------------------- services
    def start_services(self) -> None:
        """Start Kafka and Postgres unless configured from outside; `env` says where they are."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.env.get("KAFKA_BOOTSTRAP_SERVERS"):
            self._refuse_taken_port(self.kafka_port, "KAFKA_BOOTSTRAP_SERVERS to use that broker")
            self.start_kafka()
        if not self.env.get("DATABASE_URL"):
            self._refuse_taken_port(self.postgres_port, "DATABASE_URL")
            self.start_postgres()
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

    def settings(self) -> Settings:
        """Settings as the child processes will see them (this process's environment + `env`)."""
        os.environ.update(self.env)
        return Settings()

    def child_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}

    # ------------------------------------------------------------------ processes
    def start_ingest(self, log_path: Path | None = None) -> ManagedProcess:
        proc = self._spawn_kopilka("ingest", log_path)
        settings = self.settings()
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
        if wait_ready and proc.log_path.name != "-":
            start = proc.log_path.stat().st_size if proc.log_path.exists() else 0

            def ready() -> bool:
                with open(proc.log_path, "rb") as f:
                    f.seek(start)
                    return b"Worker]: Ready" in f.read()

            devservices.wait_until(ready, proc, 90, "the Faust worker reporting Ready")
        return proc

    def start_dispatch(self, log_path: Path | None = None) -> ManagedProcess:
        """`kopilka dispatch`: outbound webhooks and Telegram notifications."""
        proc = self._spawn_kopilka("dispatch", log_path)
        if proc.log_path.name != "-":
            start = proc.log_path.stat().st_size if proc.log_path.exists() else 0

            def ready() -> bool:
                with open(proc.log_path, "rb") as f:
                    f.seek(start)
                    return b"dispatch_ready" in f.read()

            devservices.wait_until(ready, proc, 60, "the dispatcher reporting dispatch_ready")
        return proc

    def _spawn_kopilka(self, command: str, log_path: Path | None) -> ManagedProcess:
        log_path = log_path or self.data_dir / "logs" / f"{command}.log"
        proc = devservices.spawn(
            command,
            [sys.executable, "-m", "kopilka", command],
            log_path,
            env=self.child_env(),
            cwd=Path(__file__).resolve().parent.parent,
        )
        self.processes.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    def write_json(self, path: Path, data: dict) -> None:
        path.write_text(json.dumps(data, indent=2))
        path.chmod(0o600)
