"""`kopilka run` for real (what `make run` starts), supervised: two workers, each with its own
log; its worker and its Postgres killed -9 come back by themselves, and a webhook sent afterwards
is accepted and processed; SIGTERM then stops every process it started.

The run has its own data dir and free loopback ports, so it shares nothing with the test
session's stack (nor with a `make run` of the developer).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kopilka.core.settings import PROJECT_ROOT
from kopilka.devstack.devservices import free_port, postgres_datadir_for

pytestmark = [pytest.mark.connected, pytest.mark.timeout(600)]

_PROCESS_LINE = re.compile(r"^ {4}(\S+)\s+pid (\d+)\s+(\S+)(?:\s+metrics \S+)?$")


class Run:
    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = (tmp_path / "run").resolve()
        self.http_port = free_port()
        self.stderr_path = tmp_path / "kopilka-run.stderr"
        self.stdout: list[str] = []
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("KOPILKA_")
            and k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
        }
        env.update({"PYTHONUNBUFFERED": "1", "KOPILKA_TENANT_CACHE_TTL_S": "0.5"})
        argv = [sys.executable, "-m", "kopilka", "run", "--workers", "2"]
        argv += ["--data-dir", str(self.data_dir), "--http-port", str(self.http_port)]
        for flag in ("kafka-port", "kafka-controller-port", "postgres-port", "redis-port"):
            argv += [f"--{flag}", str(free_port())]
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=PROJECT_ROOT,
                text=True,
                start_new_session=True,
            )
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip("\n"))

    def wait_for_banner(self, timeout_s: float) -> dict[str, tuple[int, Path]]:
        """The banner's process list: name -> (pid, log)."""
        deadline = time.monotonic() + timeout_s
        while not any(line.startswith("Kopilka is running") for line in self.stdout):
            assert self.proc.poll() is None, f"kopilka run exited: {self.stderr_tail()}"
            assert time.monotonic() < deadline, f"no banner in {timeout_s}s: {self.stderr_tail()}"
            time.sleep(0.5)
        time.sleep(0.5)  # the rest of the banner, printed at once
        found = [_PROCESS_LINE.match(line) for line in self.stdout]
        return {m[1]: (int(m[2]), PROJECT_ROOT / m[3]) for m in found if m}

    def log_events(self) -> list[dict]:
        events = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def stderr_tail(self, lines: int = 60) -> str:
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 120) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                return None
        return self.proc.returncode


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie no one reaped yet counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return False


def _pids_in_log(events: list[dict]) -> set[int]:
    return {e["pid"] for e in events if e.get("event") == "process_restarted" and "pid" in e}


@pytest.fixture
def run(tmp_path):
    started = Run(tmp_path)
    yield started
    started.stop()
    postgres = postgres_datadir_for(started.data_dir)  # as root: /var/tmp/kopilka-<hash>/postgres
    shutil.rmtree(
        postgres if postgres.is_relative_to(started.data_dir) else postgres.parent,
        ignore_errors=True,
    )


def _http(method: str, url: str, body: dict | None = None, headers=None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # refused, reset, timed out: the service is coming back
        return 0, repr(exc)


def _wait_for_balance(base: str, api_key: str, email: str, total: int) -> None:
    deadline = time.monotonic() + 180
    last = None
    while time.monotonic() < deadline:
        last = _http(
            "GET",
            f"{base}/api/v1/customers?email={email}",
            headers={"Authorization": f"Bearer {api_key}"},
        )
        if last[0] == 200 and json.loads(last[1])["balance"]["total"] == total:
            return
        time.sleep(0.5)
    raise AssertionError(f"{email} never reached a balance of {total}; last answer: {last}")


def _post_until_accepted(url: str, body: dict) -> dict:
    """A shop's retries: 202 within a bounded time (503 while a service is coming back)."""
    deadline = time.monotonic() + 120
    last = None
    while time.monotonic() < deadline:
        last = _http("POST", url, body)
        if last[0] == 202:
            return json.loads(last[1])
        time.sleep(1)
    raise AssertionError(f"the webhook was never accepted; last answer: {last}")


def _purchase(order: str, email: str) -> dict:
    return {
        "action": "purchase",
        "payload": {"email": email, "amount": 5000, "orderId": order, "description": "run test"},
    }


def test_make_run_restarts_a_killed_worker_and_postgres_and_keeps_processing(run):
    processes = run.wait_for_banner(timeout_s=300)
    expected = {"kafka", "postgres", "redis", "worker-1", "worker-2", "ingest", "dispatch"}
    assert expected <= set(processes), run.stdout
    for name in ("worker-1", "worker-2"):  # each worker its own log, both ready
        log = processes[name][1]
        assert log == run.data_dir / "logs" / f"{name}.log"
        assert b"Worker]: Ready" in log.read_bytes()
    environ = Path(f"/proc/{processes['worker-2'][0]}/environ").read_bytes().split(b"\0")
    workdir = f"KOPILKA_WORKER_DATA_DIR={run.data_dir / 'workers' / 'worker-2'}".encode()
    assert workdir in environ  # its own folder for local table state

    demo = json.loads((run.data_dir / "demo-tenant.json").read_text())
    base = f"http://127.0.0.1:{run.http_port}"
    _post_until_accepted(demo["webhook_url"], _purchase("RUN-1", "a@run.test"))
    _wait_for_balance(base, demo["api_key"], "a@run.test", 250)

    postmaster = int((postgres_datadir_for(run.data_dir) / "postmaster.pid").read_text().split()[0])
    os.kill(processes["worker-1"][0], signal.SIGKILL)
    os.kill(postmaster, signal.SIGKILL)
    killed_at = time.monotonic()
    deadline = time.monotonic() + 240
    while True:
        events = run.log_events()
        exited = {e["process"] for e in events if e.get("event") == "process_exited"}
        restarted = {e["process"] for e in events if e.get("event") == "process_restarted"}
        if {"worker-1", "postgres"} <= restarted:
            break
        assert run.proc.poll() is None, f"kopilka run exited: {run.stderr_tail()}"
        assert time.monotonic() < deadline, f"not restarted in time:\n{run.stderr_tail()}"
        time.sleep(1)
    assert {"worker-1", "postgres"} <= exited
    # "restarted" means ready again: the new worker-1 reported Ready in its log a second time
    assert processes["worker-1"][1].read_bytes().count(b"Worker]: Ready") >= 2
    recovered_s = time.monotonic() - killed_at

    accepted = _post_until_accepted(demo["webhook_url"], _purchase("RUN-2", "a@run.test"))
    assert accepted["status"] == "accepted"
    _wait_for_balance(base, demo["api_key"], "a@run.test", 500)
    print(f"worker-1 and postgres restarted {recovered_s:.1f}s after kill -9")

    pids = {pid for pid, _ in processes.values()} | _pids_in_log(run.log_events())
    assert run.stop() == 0, run.stderr_tail()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if _alive(pid)], "kopilka run left processes behind"


def _processes_using(*paths: Path) -> list[str]:
    """Command lines of live processes that name any of `paths` (our servers do)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if any(str(path) in text for path in paths) and _alive(int(cmdline.parent.name)):
                found.append(text)
    return found


def test_sigterm_while_starting_stops_what_was_already_started(run):
    deadline = time.monotonic() + 240
    while not any(line.startswith("postgres up at") for line in run.stdout):
        assert run.proc.poll() is None, f"kopilka run exited: {run.stderr_tail()}"
        assert time.monotonic() < deadline, f"postgres never came up: {run.stderr_tail()}"
        time.sleep(0.2)
    assert _processes_using(run.data_dir), "kafka should be running by now"
    signalled = time.monotonic()
    assert run.stop(timeout_s=90) == 130, run.stderr_tail()
    print(f"kopilka run stopped {time.monotonic() - signalled:.1f}s after SIGTERM mid-start")
    assert not _processes_using(run.data_dir, postgres_datadir_for(run.data_dir))
