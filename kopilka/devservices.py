"""Real Kafka, Postgres and Redis servers for development and tests, started as child processes.

Used by `make run` (when `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` / `REDIS_URL` are unset) and
by the test session. Kafka is a single-node KRaft broker whose jars Maven fetches from Maven
Central; Postgres is the server from Debian's `postgresql` package, Redis Debian's
`redis-server`. A service that does not come up raises `ServiceStartError` carrying the tail of
its log.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kopilka.settings import PROJECT_ROOT

KAFKA_VERSION = "3.9.1"
DATA_ROOT = PROJECT_ROOT / ".data"
_KAFKA_DEPLOY = PROJECT_ROOT / "deploy" / "kafka"


class ServiceStartError(RuntimeError):
    """A service did not come up; the message ends with the tail of its log."""


@dataclass
class ManagedProcess:
    name: str
    proc: subprocess.Popen
    log_path: Path
    stop_signal: int = signal.SIGTERM
    extra: dict = field(default_factory=dict)
    log_start: int = 0  # the log's size when this run started: its own lines come after

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.stop_signal)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        """kill -9 the whole process group: for fault tests."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    *,
    env: dict | None = None,
    cwd: Path | None = None,
    stop_signal: int = signal.SIGTERM,
) -> ManagedProcess:
    """Start a process in its own session (so Ctrl-C reaches it through us, in order)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    log_start = log.tell()
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    log.close()
    return ManagedProcess(name, proc, log_path, stop_signal, log_start=log_start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(check, process: ManagedProcess, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if not process.alive():
            raise ServiceStartError(
                f"{process.name} exited with code {process.proc.returncode} before {what}; "
                f"log {process.log_path}:\n{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            process.stop(5)
            raise ServiceStartError(
                f"{process.name} did not become ready ({what}) within {timeout_s:.0f}s; "
                f"log {process.log_path}:\n{process.log_tail()}"
            )
        time.sleep(0.2)


# --------------------------------------------------------------------------------------- Kafka


def kafka_libs(out=print) -> Path:
    """The broker's jars, fetched once with Maven into .data/ and reused afterwards."""
    libs = DATA_ROOT / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = libs / f"kafka_2.13-{KAFKA_VERSION}.jar"
    if marker.exists():
        return libs
    if not shutil.which("mvn") or not shutil.which("java"):
        raise ServiceStartError("Kafka needs Java 17+ and Maven on PATH (apt-get install maven)")
    out(f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} ...")
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(_KAFKA_DEPLOY / "pom.xml"),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceStartError(
            f"mvn could not fetch Kafka:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    return libs


def start_kafka(
    workdir: Path,
    port: int,
    controller_port: int,
    *,
    partitions: int = 8,
    heap: str = "512m",
    timeout_s: float = 90.0,
    out=print,
) -> ManagedProcess:
    libs = kafka_libs(out)
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    props = workdir / "server.properties"
    props.write_text(
        (_KAFKA_DEPLOY / "server.properties.template")
        .read_text()
        .format(port=port, controller_port=controller_port, log_dirs=data, partitions=partitions)
    )
    classpath = f"{libs}/*"
    java = [
        "java",
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{_KAFKA_DEPLOY / 'log4j.properties'}",
        "-cp",
        classpath,
    ]
    if not (data / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise ServiceStartError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")
    log_path = workdir / "server.log"
    proc = spawn("kafka", [*java, "kafka.Kafka", str(props)], log_path)

    def started() -> bool:
        return port_open(port) and "Kafka Server started" in log_path.read_text(errors="replace")

    wait_until(started, proc, timeout_s, f"listening on 127.0.0.1:{port}")
    proc.extra["bootstrap"] = f"127.0.0.1:{port}"
    return proc


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
    exists = subprocess.run(
        [
            str(bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "kopilka",
            "-d",
            "postgres",
            "-tAc",
            "SELECT 1 FROM pg_database WHERE datname = 'kopilka'",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    if exists.stdout.strip() != "1":
        subprocess.run(
            [
                str(bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "kopilka",
                "-d",
                "postgres",
                "-qc",
                "CREATE DATABASE kopilka",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    proc.extra["dsn"] = f"postgresql://kopilka@127.0.0.1:{port}/kopilka"
    return proc


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
