"""Argument parsing of `kopilka run` and the stack it builds from them (nothing is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kopilka.cli.main import parser
from kopilka.cli.run_local import DEFAULT_DATA_DIR, make_stack, process_lines
from kopilka.devstack import devservices


def test_run_defaults_to_one_worker_in_the_dev_data_dir():
    args = parser().parse_args(["run"])
    assert (args.workers, args.data_dir, args.http_port) == (1, DEFAULT_DATA_DIR, None)
    stack = make_stack(args)
    assert (stack.kafka_port, stack.postgres_port, stack.redis_port) == (9092, 5433, 6380)
    assert stack.postgres_dir is None  # .data/dev keeps its Postgres where it always was


def test_run_takes_workers_ports_and_its_own_data_dir(tmp_path):
    ports = ["--kafka-port", "19092", "--postgres-port", "15433", "--redis-port", "16380"]
    args = parser().parse_args(
        ["run", "--workers", "3", "--data-dir", str(tmp_path), "--http-port", "18080", *ports]
    )
    assert args.workers == 3
    stack = make_stack(args)
    assert stack.data_dir == tmp_path.resolve()
    assert (stack.kafka_port, stack.postgres_port, stack.redis_port) == (19092, 15433, 16380)
    assert stack.env["KOPILKA_HTTP_PORT"] == "18080"
    assert stack.postgres_dir == devservices.postgres_datadir_for(tmp_path.resolve())


@pytest.mark.parametrize("bad", [["--workers", "0"], ["--workers", "two"], ["--kafka-port", "0"]])
def test_run_refuses_nonsense(bad, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["run", *bad])
    assert "must be" in capsys.readouterr().err


def test_the_banner_lists_every_process_with_its_pid_and_log(tmp_path, monkeypatch):
    class Proc:
        def __init__(self, name, pid, log, metrics_port=None):
            self.name, self.pid, self.log_path = name, pid, log
            self.extra = {"metrics_port": metrics_port} if metrics_port else {}

    class Stack:
        def __init__(self) -> None:
            self.processes = [
                Proc("kafka", 101, tmp_path / "kafka" / "server.log"),
                Proc("worker-1", 102, tmp_path / "logs" / "worker-1.log"),
                Proc("worker-2", 103, tmp_path / "logs" / "worker-2.log", metrics_port=9102),
            ]

    monkeypatch.chdir(tmp_path)
    lines = process_lines(Stack())
    assert lines == [
        f"kafka     pid 101      {Path('kafka/server.log')}",
        f"worker-1  pid 102      {Path('logs/worker-1.log')}",
        f"worker-2  pid 103      {Path('logs/worker-2.log')}"
        "  metrics http://127.0.0.1:9102/metrics",
    ]
