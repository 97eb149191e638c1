"""Progress of a long command (a replay): a bar with rate and ETA on a terminal, a plain line
per 10 % otherwise (logs, CI), and a closing summary either way; and the same figures as
Prometheus gauges, which `serve_metrics` exposes while the command runs
(KOPILKA_REPLAY_METRICS_PORT)."""

from __future__ import annotations

import sys
import time
from functools import cache
from typing import TextIO

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@cache
def gauges():
    """(done, expected, rate), labelled by kind ("raw", "events": a handful of values).

    Made on first use: prometheus_client must not be imported when the CLI is, because
    `kopilka ingest --procs N` sets PROMETHEUS_MULTIPROC_DIR before its first import
    (ingest.serve), or /metrics would not add up the processes."""
    from prometheus_client import Gauge

    return (
        Gauge("kopilka_replay_records_done", "Records a replay has read so far", ["replay"]),
        Gauge(
            "kopilka_replay_records_expected",
            "Records a replay will read (set at its start)",
            ["replay"],
        ),
        Gauge("kopilka_replay_records_per_second", "A replay's rate since it started", ["replay"]),
    )


def serve_metrics(port: int, host: str) -> None:
    """/metrics on this port while the command runs (its gauges, and the process's own)."""
    from prometheus_client import start_http_server

    gauges()
    start_http_server(port, addr=host)


class Reporter:
    def __init__(self, what: str, total: int, out: TextIO | None = None) -> None:
        self.what, self.total, self.done = what, max(total, 0), 0
        kind = what.removeprefix("replay ")
        done, expected, rate = gauges()
        self._gauges = done.labels(kind), rate.labels(kind)
        expected.labels(kind).set(self.total)
        self._gauges[0].set(0)
        self.out = out or sys.stderr
        self.started = time.monotonic()
        self._next_tenth = 1
        self._bar: Progress | None = None
        if self.out.isatty():
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._bar.add_task(what, total=self.total or None, rate="-")
            self._bar.start()

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._gauges[0].set(self.done)
        self._gauges[1].set(self.rate())
        if self._bar is not None:
            self._bar.update(self._task, advance=n, rate=f"{self.rate():,.0f}")
            return
        while (
            self.total
            and self._next_tenth <= 10
            and self.done * 10 >= self._next_tenth * self.total
        ):
            elapsed = time.monotonic() - self.started
            left = (self.total - self.done) / self.rate() if self.done else 0.0
            print(
                f"{self.what}: {self._next_tenth * 10}% ({self.done:,}/{self.total:,}),"
                f" {self.rate():,.0f}/s, {elapsed:.1f}s elapsed, ~{left:.0f}s left",
                file=self.out,
                flush=True,
            )
            self._next_tenth += 1

    def close(self, summary: str) -> None:
        if self._bar is not None:
            self._bar.stop()
        elapsed = time.monotonic() - self.started
        print(
            f"{self.what}: {summary} in {elapsed:.1f}s ({self.rate():,.0f}/s)",
            file=self.out,
            flush=True,
        )
