"""Stack.restart with tiny real processes: the new one takes the dead one's place in the stop
order, and a restart that fails leaves the stack as it was, ready for the next attempt."""

from __future__ import annotations

import sys

import pytest

from kopilka.devstack.processes import ServiceStartError, spawn
from kopilka.devstack.stack import Stack

SLEEP = ["sleep", "30"]
CRASH = [sys.executable, "-c", "import sys; sys.exit(2)"]


@pytest.fixture
def stack(tmp_path):
    made = Stack(tmp_path)
    yield made
    made.stop()


def _start(stack: Stack, name: str, argv=SLEEP):
    return spawn(name, argv, stack.data_dir / f"{name}.log")


def test_a_restarted_process_keeps_its_place_and_the_others_are_untouched(stack):
    for name, service in (("postgres", True), ("worker-1", False), ("ingest", False)):
        stack.adopt(_start(stack, name), lambda name=name: _start(stack, name), service=service)
    before = list(stack.processes)
    killed = stack.kill_process("worker-1")
    assert not killed.alive() and stack.processes == before  # a crash: still in the stack

    new = stack.restart("worker-1")
    assert [p.name for p in stack.processes] == ["postgres", "worker-1", "ingest"]
    assert stack.processes[1] is new and new.alive() and new is not killed
    assert stack.processes[0] is before[0] and stack.processes[2] is before[2]
    assert all(p.alive() for p in stack.processes)

    stack.stop()
    assert not any(p.alive() for p in [*before, new]) and stack.processes == []


def test_a_failed_restart_leaves_the_dead_process_in_place_for_the_next_attempt(stack):
    attempts = []

    def flaky_start():
        attempts.append(1)
        if len(attempts) == 1:  # like _spawn_kopilka: added to the stack, then it dies
            proc = _start(stack, "dispatch", CRASH)
            stack.processes.append(proc)
            proc.proc.wait(10)
            raise ServiceStartError("dispatch exited with code 2 before dispatch_ready")
        return _start(stack, "dispatch")

    stack.adopt(_start(stack, "kafka"), lambda: _start(stack, "kafka"), service=True)
    stack.adopt(_start(stack, "dispatch", CRASH), flaky_start)
    dead = stack.process("dispatch")
    dead.proc.wait(10)

    with pytest.raises(ServiceStartError):
        stack.restart("dispatch")
    assert stack.processes[1] is dead and len(stack.processes) == 2  # the failed try is gone

    new = stack.restart("dispatch")
    assert stack.processes[1] is new and new.alive() and len(attempts) == 2
