"""Real Apache Kafka brokers (KRaft) for development and tests: one node, or a local cluster.

The jars come from Maven Central once (`kafka_libs`); `start_kafka` runs the single combined
broker+controller that `make run` and the test session use; `start_kafka_cluster` runs N such
nodes forming one 3-voter quorum, with replication factor N and min.insync.replicas 2, for the
fault suite (one broker killed -9 under load, then restarted).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kopilka.core.settings import PROJECT_ROOT
from kopilka.devstack.processes import (
    ManagedProcess,
    ServiceStartError,
    free_port,
    port_open,
    spawn,
)

KAFKA_VERSION = "3.9.1"
DATA_ROOT = PROJECT_ROOT / ".data"
_KAFKA_DEPLOY = PROJECT_ROOT / "deploy" / "kafka"
_STARTED = b"Kafka Server started"


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
    result = subprocess.run(  # noqa: S603 - our own fixed command line
        [  # noqa: S607 - mvn from PATH, as the README says
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


def _java(heap: str, out=print, *, light: bool = False) -> list[str]:
    """`light`: a test node that should start fast on a busy machine (C1 compiler only, serial
    GC), not run for days."""
    return [
        "java",
        f"-Xms{heap}",
        f"-Xmx{heap}",
        *(["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"] if light else ["-XX:+UseG1GC"]),
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{_KAFKA_DEPLOY / 'log4j.properties'}",
        "-cp",
        f"{kafka_libs(out)}/*",
    ]


def _write_properties(
    path: Path, *, port: int, controller_port: int, partitions: int, overrides: dict | None = None
) -> None:
    """The broker template rendered for these ports, with `overrides` replacing its keys."""
    text = (
        (_KAFKA_DEPLOY / "server.properties.template")
        .read_text()
        .format(
            port=port,
            controller_port=controller_port,
            log_dirs=path.parent / "data",
            partitions=partitions,
        )
    )
    overrides = dict(overrides or {})
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if not line.startswith("#") and key in overrides:
            line = f"{key}={overrides.pop(key)}"
        lines.append(line)
    lines += [f"{key}={value}" for key, value in overrides.items()]
    path.write_text("\n".join(lines) + "\n")


def _format_storage(java: list[str], props: Path, cluster_id: str) -> None:
    """Format the node's log dir once (a restart keeps its data)."""
    if (props.parent / "data" / "meta.properties").exists():
        return
    fmt = subprocess.run(  # noqa: S603 - our own fixed command line
        [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
        capture_output=True,
        text=True,
        check=False,
    )
    if fmt.returncode != 0:
        raise ServiceStartError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")


def _new_cluster_id() -> str:
    """A random Kafka cluster id; never one starting with '-', which the storage tool would
    take for an option (Kafka's own Uuid.randomUuid() skips those for the same reason)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _wait_started(brokers: list[tuple[ManagedProcess, int]], timeout_s: float) -> None:
    """Wait until every broker listens and logged that it started (this run, not an earlier
    one); one that exits or overruns raises with the tail of its log, all of them stopped."""
    deadline = time.monotonic() + timeout_s
    try:
        for proc, port in brokers:
            while not (port_open(port) and proc.logged(_STARTED)):
                if not proc.alive():
                    raise ServiceStartError(
                        f"{proc.name} exited with code {proc.returncode} before listening on "
                        f"127.0.0.1:{port}; log {proc.log_path}:\n{proc.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise ServiceStartError(
                        f"{proc.name} did not start (127.0.0.1:{port}) within {timeout_s:.0f}s; "
                        f"log {proc.log_path}:\n{proc.log_tail()}"
                    )
                time.sleep(0.2)
    except BaseException:  # overrun, or Ctrl-C while waiting: leave no half-started broker
        for proc, _ in brokers:
            proc.stop(5)
        raise


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
    """The single-node broker of `make run` and the test session; its data survives a restart."""
    java = _java(heap, out)
    workdir.mkdir(parents=True, exist_ok=True)
    props = workdir / "server.properties"
    _write_properties(props, port=port, controller_port=controller_port, partitions=partitions)
    _format_storage(java, props, _new_cluster_id())
    proc = spawn("kafka", [*java, "kafka.Kafka", str(props)], workdir / "server.log")
    _wait_started([(proc, port)], timeout_s)
    proc.extra["bootstrap"] = f"127.0.0.1:{port}"
    return proc


# ----------------------------------------------------------------------------- local cluster


@dataclass
class KafkaCluster:
    """N combined broker+controller nodes on loopback: node i (from 1) is `brokers[i - 1]`."""

    workdir: Path
    ports: list[int]
    controller_ports: list[int]
    heap: str = "256m"
    timeout_s: float = 120.0
    brokers: list[ManagedProcess | None] = field(default_factory=list)
    out: callable = print

    @property
    def bootstrap(self) -> str:
        """`host:port,host:port,...`, for KAFKA_BOOTSTRAP_SERVERS."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def node_dir(self, node: int) -> Path:
        return self.workdir / f"broker-{node}"

    def _spawn(self, node: int) -> ManagedProcess:
        props = self.node_dir(node) / "server.properties"
        proc = spawn(
            f"kafka-{node}",
            [*_java(self.heap, self.out, light=True), "kafka.Kafka", str(props)],
            self.node_dir(node) / "server.log",
        )
        proc.extra["bootstrap"] = f"127.0.0.1:{self.ports[node - 1]}"
        self.brokers[node - 1] = proc
        return proc

    def kill(self, node: int) -> None:
        """kill -9 one node (it stays down until `restart(node)`)."""
        proc = self.brokers[node - 1]
        if proc is not None:
            proc.kill()

    def restart(self, node: int) -> ManagedProcess:
        """Start a stopped or killed node again on its ports and data; waits until it serves."""
        old = self.brokers[node - 1]
        if old is not None:
            old.stop(10)
        proc = self._spawn(node)
        _wait_started([(proc, self.ports[node - 1])], self.timeout_s)
        return proc

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop every node at once (one by one, the last ones wait for a quorum that is gone)."""
        live = [proc for proc in self.brokers if proc is not None and proc.alive()]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in live:
            proc.stop(max(0.1, deadline - time.monotonic()))


def start_kafka_cluster(
    workdir: Path,
    n: int = 3,
    *,
    ports: list[int] | None = None,
    controller_ports: list[int] | None = None,
    partitions: int = 8,
    min_insync: int = 2,
    heap: str = "256m",
    timeout_s: float = 120.0,
    out=print,
) -> KafkaCluster:
    """Start an N-node KRaft cluster (every node a broker and a controller voter) on free
    loopback ports; topics default to replication factor N and min.insync.replicas 2."""
    ports = ports or [free_port() for _ in range(n)]
    controller_ports = controller_ports or [free_port() for _ in range(n)]
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(controller_ports, 1))
    isr = min(min_insync, n)
    cluster = KafkaCluster(workdir, ports, controller_ports, heap, timeout_s, [None] * n, out)
    java = _java(heap, out, light=True)
    cluster_id = _new_cluster_id()
    for node in range(1, n + 1):
        cluster.node_dir(node).mkdir(parents=True, exist_ok=True)
        props = cluster.node_dir(node) / "server.properties"
        _write_properties(
            props,
            port=ports[node - 1],
            controller_port=controller_ports[node - 1],
            partitions=partitions,
            overrides={
                "node.id": node,
                "controller.quorum.voters": voters,
                "default.replication.factor": n,
                "min.insync.replicas": isr,
                "offsets.topic.replication.factor": n,
                "transaction.state.log.replication.factor": n,
                "transaction.state.log.min.isr": isr,
                "unclean.leader.election.enable": "false",
            },
        )
        _format_storage(java, props, cluster_id)
    try:
        for node in range(1, n + 1):  # all at once: none can start without a quorum
            cluster._spawn(node)
        _wait_started(
            [(p, port) for p, port in zip(cluster.brokers, ports, strict=True)], timeout_s
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster
