"""`kopilka ingest [--procs N]`: the ingress as one process, or N processes on one port.

One process runs the aiohttp app as before. With N > 1 this process becomes a small parent:
it forks N children that each run the whole app (their own Kafka producer, Redis and Postgres
connections) and bind the same host:port with SO_REUSEPORT, so the kernel spreads incoming
connections over them. The parent serves nothing; it restarts a child that dies (after 1 s),
passes SIGTERM / SIGINT on to every child and waits for them to finish their requests. A child
also exits when the parent dies (PR_SET_PDEATHSIG), so no orphan keeps the port.

What is shared between the children is what is shared between ingress replicas anyway: rate
limits and webhook-id replays in Redis (without REDIS_URL each child keeps its own), tenants in
Postgres. `/metrics` adds up every child's counters (prometheus_client's multiprocess mode,
files in a fresh temporary folder).

Every process runs on uvloop (kopilka.core.event_loop; KOPILKA_EVENT_LOOP=asyncio for asyncio's
own): the event loop and its socket transports are about a quarter of the ingress's CPU per
request on asyncio's loop.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time

from kopilka.core.event_loop import use_event_loop
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings

log = get_logger(__name__)

PROCS_VAR = "KOPILKA_INGRESS_PROCS"
MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"
_PR_SET_PDEATHSIG = 1
RESTART_DELAY_S = 1.0
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def default_procs() -> int:
    """KOPILKA_INGRESS_PROCS, 1 when unset."""
    value = os.environ.get(PROCS_VAR, "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else 1


def serve(settings: Settings, procs: int) -> int:
    """Run until SIGTERM / SIGINT; the exit code."""
    loop = use_event_loop(settings.event_loop)
    if procs <= 1:
        from ingest.app import run

        log.info("ingest_processes", procs=1, loop=loop)
        run(settings)
        return 0
    metrics_dir = tempfile.mkdtemp(prefix="kopilka-ingest-metrics-")
    os.environ[MULTIPROC_VAR] = metrics_dir  # before prometheus_client is first imported
    try:
        return _parent(settings, procs, loop)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _parent(settings: Settings, procs: int, loop: str) -> int:
    from ingest.app import run  # imported once here, so each fork starts warm

    children: dict[int, int] = {}  # pid -> slot
    stopping = False
    parent = os.getpid()

    def start(slot: int) -> None:
        # a signal between fork and the child's reset would run the parent's handler in it
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the child: default signal handling until aiohttp installs its own
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            _die_with_parent()
            if os.getppid() != parent:  # the parent died before the line above
                os._exit(1)
            code = 1
            try:
                run(settings, reuse_port=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:  # whatever it was, the child must not return
                log.error("ingest_process_failed", slot=slot, error=repr(exc))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = slot
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            _signal(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("ingest_processes", procs=procs, loop=loop, reuse_port=True, port=settings.http_port)
    for slot in range(procs):
        start(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        slot = children.pop(pid, None)
        if slot is None or stopping:
            continue
        code = os.waitstatus_to_exitcode(status)
        log.warning("ingest_process_exited", slot=slot, pid=pid, code=code)
        _forget_metrics(pid)
        time.sleep(RESTART_DELAY_S)
        if not stopping:
            start(slot)
            log.info("ingest_process_restarted", slot=slot)
    return 0


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _die_with_parent() -> None:
    """Linux: SIGTERM to this process when its parent dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the stack still stops the whole process group


def _forget_metrics(pid: int) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
