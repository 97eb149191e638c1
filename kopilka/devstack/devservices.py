"""Real Kafka, Postgres and Redis servers for development and tests, started as child processes.

Used by `make run` (when `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` / `REDIS_URL` are unset) and
by the test session. Postgres is the server from Debian's `postgresql` package, Redis Debian's
`redis-server`; Kafka (single node or a local cluster) is in kopilka.devstack.kafka_server and the
process plumbing in kopilka.devstack.processes, both re-exported here. A service that does not come
up raises `ServiceStartError` carrying the tail of its log.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

from kopilka.core.settings import PROJECT_ROOT
from kopilka.devstack.kafka_server import (  # noqa: F401 - the stack's one import for every service
    DATA_ROOT,
    KAFKA_VERSION,
    KafkaCluster,
    kafka_libs,
    start_kafka,
    start_kafka_cluster,
)
from kopilka.devstack.processes import (  # noqa: F401
    ManagedProcess,
    ServiceStartError,
    free_port,
    port_open,
    spawn,
    wait_until,
)

# ------------------------------------------------------------------------------------ Postgres


def postgres_bindir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise ServiceStartError(
        "PostgreSQL server binaries not found: install Debian's `postgresql` package "
        "(the Makefile does this as root) or point DATABASE_URL at a server"
    )


def _run_as() -> list[str]:
    """Postgres refuses to run as root: drop to the `postgres` system user then."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--"]


def postgres_datadir(name: str) -> Path:
    """Inside .data/ normally; as root, a folder the `postgres` user can reach (a clone made by
    `mktemp -d` is mode 0700, so the server could not enter .data/ there)."""
    if os.geteuid() != 0:
        return DATA_ROOT / name
    tag = hashlib.sha1(str(PROJECT_ROOT).encode()).hexdigest()[:10]  # noqa: S324 - a folder name
    return Path("/var/tmp") / f"kopilka-{tag}" / name


def postgres_datadir_for(data_dir: Path) -> Path:
    """The Postgres data folder of a stack kept in `data_dir` (anywhere, e.g. a test's tmp dir):
    inside it normally; as root, a folder under /var/tmp the `postgres` user can reach."""
    if os.geteuid() != 0:
        return data_dir / "postgres"
    tag = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:10]  # noqa: S324
    return Path("/var/tmp") / f"kopilka-{tag}" / "postgres"


def start_postgres(
    datadir: Path, port: int, *, log_path: Path, durable: bool = True, timeout_s: float = 60.0
) -> ManagedProcess:
    bindir = postgres_bindir()
    run_as = _run_as()
    if not (datadir / "PG_VERSION").exists():
        shutil.rmtree(datadir, ignore_errors=True)
        datadir.mkdir(parents=True)
        if run_as:
            shutil.chown(datadir.parent, "postgres")
            shutil.chown(datadir, "postgres")
        init = subprocess.run(
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                "kopilka",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if init.returncode != 0:
            raise ServiceStartError(f"initdb failed:\n{init.stdout[-2000:]}{init.stderr[-2000:]}")
    settings = [
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={datadir}",
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=128MB",
    ]
    if not durable:  # tests: the data is thrown away, speed matters more than crash safety
        settings += [
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
    proc = spawn(
        "postgres",
        [*run_as, str(bindir / "postgres"), "-D", str(datadir), "-p", str(port), *settings],
        log_path,
        stop_signal=signal.SIGINT,
    )

    def accepting() -> bool:
        ready = subprocess.run(
            [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "kopilka", "-q"],
            check=False,
        )
        return ready.returncode == 0

    wait_until(accepting, proc, timeout_s, f"accepting connections on 127.0.0.1:{port}")
    if _psql(bindir, port, "SELECT 1 FROM pg_database WHERE datname = 'kopilka'", proc) != "1":
        _psql(bindir, port, "CREATE DATABASE kopilka", proc)
    proc.extra["dsn"] = f"postgresql://kopilka@127.0.0.1:{port}/kopilka"
    return proc


def _psql(bindir: Path, port: int, sql: str, server: ManagedProcess) -> str:
    """Run one statement as `kopilka` on the `postgres` database; a failure stops the server and
    raises with psql's error and the tail of the server's log."""
    psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "kopilka"]
    result = subprocess.run(
        [*psql, "-d", "postgres", "-tAc", sql],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        server.stop(10)
        raise ServiceStartError(
            f"postgres: {sql!r} failed: {result.stderr.strip()[-2000:]}; "
            f"log {server.log_path}:\n{server.log_tail()}"
        )
    return result.stdout.strip()


# --------------------------------------------------------------------------------------- Redis


def start_redis(workdir: Path, port: int, *, timeout_s: float = 20.0) -> ManagedProcess:
    """A loopback-only redis-server holding nothing on disk: rate limits and replay ids are
    short-lived, so a restart that forgets them only loosens a limit for a minute."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceStartError(
            "redis-server not found: install Debian's `redis-server` package "
            "(the Makefile does this as root) or point REDIS_URL at a server"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    proc = spawn(
        "redis",
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--protected-mode",
            "yes",
        ],
        workdir / "redis.log",
    )
    wait_until(lambda: port_open(port), proc, timeout_s, f"listening on 127.0.0.1:{port}")
    proc.extra["url"] = f"redis://127.0.0.1:{port}/0"
    return proc
