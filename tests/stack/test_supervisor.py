"""The supervisor with tiny real child processes: restart, backoff, reset, failed starts, stop.

The clock is a fake one the test moves, so backoff is checked exactly and fast; the children are
real processes (`sleep`, `python -c 'sys.exit(1)'`) started the way the stack starts its own.
"""

from __future__ import annotations

import sys
import time

import pytest
from structlog.testing import capture_logs

from kopilka.devstack.processes import ServiceStartError, spawn
from kopilka.devstack.supervisor import Backoff, Supervisor

CRASH = [sys.executable, "-c", "import sys; print('boom', flush=True); sys.exit(3)"]
SLEEP = ["sleep", "30"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Children:
    """Starts named children; `argv[name]` says what the next start of `name` runs."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.argv: dict[str, list[str]] = {}
        self.started: list[str] = []
        self.all = []
        self.fail_next: set[str] = set()

    def start(self, name: str):
        if name in self.fail_next:
            self.fail_next.discard(name)
            raise ServiceStartError(f"{name} did not come up; log:\nsome line\nlast line")
        proc = spawn(name, self.argv[name], self.tmp_path / f"{name}.log")
        self.started.append(name)
        self.all.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.all:
            proc.kill()


@pytest.fixture
def children(tmp_path):
    made = Children(tmp_path)
    yield made
    made.stop_all()


def dead(proc):
    proc.proc.wait(10)
    return proc


def test_a_dead_child_is_restarted_after_the_first_delay_and_the_rest_keep_running(children):
    clock = Clock()
    sup = Supervisor(children.start, Backoff(1, 30, 60), clock=clock)
    children.argv = {"db": SLEEP, "worker": CRASH}
    db, worker = children.start("db"), children.start("worker")
    sup.watch("db", db)
    sup.watch("worker", worker)
    dead(worker)
    children.argv["worker"] = SLEEP

    with capture_logs() as logs:
        sup.check()
        assert sup.down() == ["worker"] and children.started == ["db", "worker"]
        clock.now += 0.99
        sup.check()
        assert children.started == ["db", "worker"]  # not before its delay
        clock.now += 0.01
        sup.check()

    assert children.started == ["db", "worker", "worker"]
    assert sup.child("worker").alive() and sup.restarts("worker") == 1 and sup.down() == []
    assert sup.child("db") is db and db.alive()  # the others were never touched
    exited, restarted = logs
    assert exited["event"] == "process_exited" and exited["log_level"] == "warning"
    assert exited["process"] == "worker" and exited["exit_code"] == 3
    assert exited["restart_in_s"] == 1 and "boom" in exited["log_tail"]
    assert restarted["event"] == "process_restarted" and restarted["restarts"] == 1


def test_quick_deaths_double_the_delay_up_to_the_cap(children):
    clock = Clock()
    sup = Supervisor(children.start, Backoff(1, 30, 60), clock=clock)
    children.argv = {"kafka": CRASH}
    sup.watch("kafka", children.start("kafka"))
    delays = []
    with capture_logs() as logs:
        for _ in range(8):
            dead(sup.child("kafka"))
            sup.check()  # notices the exit
            delays.append(next(e for e in reversed(logs) if e["event"] == "process_exited"))
            clock.now += delays[-1]["restart_in_s"]
            sup.check()  # restarts it: it dies again at once
    assert [e["restart_in_s"] for e in delays] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert sup.restarts("kafka") == 8


def test_a_child_that_stayed_up_long_enough_starts_again_from_the_first_delay(children):
    clock = Clock()
    sup = Supervisor(children.start, Backoff(1, 30, 60), clock=clock)
    children.argv = {"worker": CRASH}
    sup.watch("worker", children.start("worker"))
    for _ in range(3):  # three quick deaths: the next wait would be 8 s
        dead(sup.child("worker"))
        sup.check()
        clock.now += 10
        sup.check()
    children.argv["worker"] = SLEEP
    dead(sup.child("worker"))
    sup.check()
    clock.now += 10
    sup.check()
    assert sup.child("worker").alive()  # this one stays up
    clock.now += 59
    sup.child("worker").kill()
    with capture_logs() as logs:
        sup.check()
    assert logs[0]["restart_in_s"] == 16  # up 59 s: still counted as a quick death
    clock.now += 16
    sup.check()
    clock.now += 60
    sup.child("worker").kill()
    with capture_logs() as logs:
        sup.check()
    assert logs[0]["restart_in_s"] == 1 and logs[0]["uptime_s"] == 60


def test_a_restart_that_fails_is_logged_and_retried_with_backoff(children):
    clock = Clock()
    sup = Supervisor(children.start, Backoff(1, 30, 60), clock=clock)
    children.argv = {"postgres": CRASH}
    sup.watch("postgres", children.start("postgres"))
    dead(sup.child("postgres"))
    children.fail_next.add("postgres")
    children.argv["postgres"] = SLEEP
    with capture_logs() as logs:
        sup.check()
        clock.now += 1
        sup.check()  # the start raises: logged, retried 2 s later
        assert sup.down() == ["postgres"]
        clock.now += 1.9
        sup.check()
        assert sup.down() == ["postgres"]
        clock.now += 0.1
        sup.check()
    assert sup.child("postgres").alive() and sup.down() == []
    failed = next(e for e in logs if e["event"] == "process_restart_failed")
    assert failed["log_level"] == "error" and failed["retry_in_s"] == 2
    assert failed["error"][-1] == "last line"  # the tail of the service's log is in the line


def test_stop_stops_every_child_newest_first_and_restarts_nothing_after(children, tmp_path):
    order = []

    class Recorded:
        def __init__(self, proc) -> None:
            self.proc, self.log_path = proc, proc.log_path

        def alive(self):
            return self.proc.alive()

        @property
        def returncode(self):
            return self.proc.returncode

        def log_tail(self, lines=40):
            return self.proc.log_tail(lines)

        def stop(self, timeout_s=30.0):
            order.append(self.proc.name)
            self.proc.stop(timeout_s)

    sup = Supervisor(lambda name: Recorded(children.start(name)), Backoff(0, 0, 60))
    children.argv = {"kafka": SLEEP, "postgres": SLEEP, "worker-1": SLEEP, "ingest": CRASH}
    for name in children.argv:
        sup.watch(name, Recorded(children.start(name)))
    dead(sup.child("ingest").proc)
    children.argv["ingest"] = SLEEP
    sup.check()
    sup.check()
    assert sup.restarts("ingest") == 1  # a restarted child keeps its place in the order

    sup.stop(timeout_s=5)
    assert order == ["ingest", "worker-1", "postgres", "kafka"]
    assert not any(proc.alive() for proc in children.all)
    sup.check()
    assert children.started.count("ingest") == 2  # nothing started after stop


def test_run_keeps_restarting_in_real_time_until_told_to_stop(children):
    children.argv = {"flaky": CRASH}
    sup = Supervisor(children.start, Backoff(0.05, 0.1, 60))
    sup.watch("flaky", children.start("flaky"))
    deadline = time.monotonic() + 10
    sup.run(lambda: sup.restarts("flaky") >= 3 or time.monotonic() > deadline, tick_s=0.02)
    assert sup.restarts("flaky") >= 3
