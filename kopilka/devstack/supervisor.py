"""Keep what `make run` started running: a child that dies is restarted, with capped backoff.

The supervisor watches named child processes (anything with `alive()`, `returncode`, `log_path`
and `log_tail()`, e.g. a `ManagedProcess`) and owns no knowledge of what they are: restarting
one is the `restart(name)` callable it is given (kopilka.devstack.stack.Stack.restart for the local
stack). The first restart waits `initial_s`, each further one twice as long up to `max_s`; a
child that stayed up `stable_after_s` counts as healthy again and its next restart waits
`initial_s`. A restart that fails (the child does not come up) is retried on the same schedule.
Every exit, restart and failed restart is one structured log line. `stop()` ends the watching
and stops every child, newest first; nothing is restarted after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kopilka.core.logging import get_logger

_TAIL_LINES = 15


class Child(Protocol):
    log_path: object

    def alive(self) -> bool: ...

    @property
    def returncode(self) -> int | None: ...

    def log_tail(self, lines: int = 40) -> str: ...

    def stop(self, timeout_s: float = 30.0) -> None: ...


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 1.0
    max_s: float = 30.0
    stable_after_s: float = 60.0

    def delay(self, failures: int) -> float:
        """The wait before restart number `failures` (1, 2, ...) of a run of quick deaths."""
        return min(self.initial_s * 2 ** max(failures - 1, 0), self.max_s)


@dataclass
class _Watched:
    name: str
    child: Child
    started_at: float
    failures: int = 0  # deaths since the child last stayed up `stable_after_s`
    restarts: int = 0
    restart_at: float | None = None  # set while the child is down, waiting for its restart


class Supervisor:
    def __init__(
        self,
        restart: Callable[[str], Child],
        backoff: Backoff | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        log=None,
    ) -> None:
        self._restart = restart
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._log = log or get_logger("kopilka.devstack.supervisor")
        self._watched: dict[str, _Watched] = {}  # in the order they were started
        self.stopped = False
        self.restarting: str | None = None  # the child being restarted right now, if any

    def watch(self, name: str, child: Child) -> None:
        self._watched[name] = _Watched(name, child, self._clock())

    def child(self, name: str) -> Child:
        return self._watched[name].child

    def restarts(self, name: str) -> int:
        return self._watched[name].restarts

    def down(self) -> list[str]:
        """Names of the children waiting for a restart."""
        return [w.name for w in self._watched.values() if w.restart_at is not None]

    def check(self) -> None:
        """One pass: note the children that died, restart those whose wait is over."""
        for watched in list(self._watched.values()):
            if self.stopped:
                return
            if watched.restart_at is None:
                if not watched.child.alive():
                    self._died(watched)
            elif self._clock() >= watched.restart_at:
                self._try_restart(watched)

    def run(self, should_stop: Callable[[], bool], tick_s: float = 0.5) -> None:
        """Check every `tick_s` until `should_stop()`."""
        while not should_stop() and not self.stopped:
            self.check()
            time.sleep(tick_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop watching, then stop every child, newest first (a restarted child keeps its
        place: services stay behind the processes that use them)."""
        self.stopped = True
        for watched in reversed(list(self._watched.values())):
            watched.child.stop(timeout_s)

    def _died(self, watched: _Watched) -> None:
        now = self._clock()
        uptime = now - watched.started_at
        if uptime >= self.backoff.stable_after_s:
            watched.failures = 0
        watched.failures += 1
        delay = self.backoff.delay(watched.failures)
        watched.restart_at = now + delay
        child = watched.child
        self._log.warning(
            "process_exited",
            process=watched.name,
            pid=getattr(child, "pid", None),
            exit_code=child.returncode,
            uptime_s=round(uptime, 1),
            restart_in_s=delay,
            restarts=watched.restarts,
            log_path=str(child.log_path),
            log_tail=child.log_tail(_TAIL_LINES).splitlines(),
        )

    def _try_restart(self, watched: _Watched) -> None:
        started = self._clock()
        self.restarting = watched.name
        try:
            child = self._restart(watched.name)
        except Exception as exc:  # a failed start is retried, never fatal
            watched.failures += 1
            delay = self.backoff.delay(watched.failures)
            watched.restart_at = self._clock() + delay
            self._log.error(
                "process_restart_failed",
                process=watched.name,
                error=str(exc).splitlines()[: _TAIL_LINES + 2],
                attempt=watched.failures,
                retry_in_s=delay,
            )
            return
        finally:
            self.restarting = None
        watched.child = child
        watched.started_at = self._clock()
        watched.restart_at = None
        watched.restarts += 1
        self._log.info(
            "process_restarted",
            process=watched.name,
            pid=getattr(child, "pid", None),
            restarts=watched.restarts,
            start_s=round(self._clock() - started, 1),
            log_path=str(child.log_path),
        )
