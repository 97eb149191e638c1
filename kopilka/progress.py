"""Progress of a long command (a replay): a bar with rate and ETA on a terminal, a plain line
per 10 % otherwise (logs, CI), and a closing summary either way."""

from __future__ import annotations

import sys
import time
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


class Reporter:
    def __init__(self, what: str, total: int, out: TextIO | None = None) -> None:
        self.what, self.total, self.done = what, max(total, 0), 0
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
