"""Child processes of the local stack: start one in its own session, wait for it, stop or kill it.

The servers (kopilka.devstack.kafka_server, kopilka.devstack.devservices) and the Kopilka
processes (kopilka.devstack.stack) are all `ManagedProcess`es; kopilka.devstack.supervisor restarts
the ones that die.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

_TAIL_BYTES = 64 * 1024


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

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log (read from its end: server logs grow large)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _TAIL_BYTES))
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def logged(self, marker: bytes) -> bool:
        """Whether this run of the process (not an earlier one in the same log) wrote `marker`."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                return marker in f.read()
        except OSError:
            return False

    def group_alive(self) -> bool:
        """Whether any process of its group lives, the leader or what it left behind (e.g. the
        Postgres server under `runuser` when only `runuser` was killed)."""
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return _live_members(self.proc.pid) != 0

    def stop(self, timeout_s: float = 30.0) -> None:
        """Signal the whole group, wait for it to end, kill -9 what is left after `timeout_s`."""
        if not self.alive() and not self.group_alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.stop_signal)
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout_s)
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.alive() or self.group_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            deadline = time.monotonic() + 5
            while self.group_alive() and time.monotonic() < deadline:
                time.sleep(0.05)

    def kill(self) -> None:
        """kill -9 the whole process group: for fault tests."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def _live_members(pgid: int) -> int:
    """How many processes of group `pgid` still run (not zombies waiting to be reaped, which
    a container's init may never do); -1 when /proc cannot tell."""
    proc = Path("/proc")
    if not proc.is_dir():
        return -1
    count = 0
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            count += 1
    return count


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
    proc = subprocess.Popen(  # noqa: S603 - argv built by the stack, never from input
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
    """Wait for `check()`; a process that exits or overruns raises with the tail of its log, and
    one that overruns (or a Ctrl-C while waiting) is stopped."""
    deadline = time.monotonic() + timeout_s
    try:
        while not check():
            if not process.alive():
                raise ServiceStartError(
                    f"{process.name} exited with code {process.proc.returncode} before {what}; "
                    f"log {process.log_path}:\n{process.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"{process.name} did not become ready ({what}) within {timeout_s:.0f}s; "
                    f"log {process.log_path}:\n{process.log_tail()}"
                )
            time.sleep(0.2)
    except BaseException:  # overrun, or Ctrl-C while waiting: leave no half-started process
        process.stop(5)
        raise
