"""ManagedProcess.stop with real process groups: nothing a child leaves behind survives it."""

from __future__ import annotations

import os
import signal
import time

from kopilka.devstack.processes import spawn


def _wait_for_children(pid: int, count: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
        if len(children) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{pid} never started {count} children")


def test_stop_ends_what_a_killed_leader_left_behind(tmp_path):
    # like Postgres under runuser: killing only the pid the banner shows leaves the server
    proc = spawn("svc", ["sh", "-c", "sleep 300 & sleep 300 & wait"], tmp_path / "svc.log")
    _wait_for_children(proc.pid, 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.proc.wait(5)
    assert not proc.alive() and proc.group_alive()  # its two sleeps are still there

    proc.stop(timeout_s=5)
    assert not proc.group_alive()


def test_stop_kills_a_group_that_ignores_the_stop_signal(tmp_path):
    proc = spawn("stubborn", ["sh", "-c", "trap '' TERM; sleep 300 & wait"], tmp_path / "s.log")
    _wait_for_children(proc.pid, 1)
    started = time.monotonic()
    proc.stop(timeout_s=1)
    assert not proc.alive() and not proc.group_alive()
    assert 1 <= time.monotonic() - started < 10
