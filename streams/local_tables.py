"""The worker's local table store is a copy of the changelog, trusted only after a clean stop.

A table write reaches the local RocksDB store at once and the changelog topic a moment later.
A worker killed in between leaves local entries the changelog never got, and on restart Faust
restores only the changelog records after the store's persisted offset, over them. In the
ten-kill fault scenario a customer's entry came back from the changelog one purchase older,
next to that purchase's order entry kept locally: the purchase, "remembered" by its order, was
replayed without being applied to the customer again, and its points were missing from every
balance after it (two histories of one `seq` on loyalty.events).

So the worker marks a clean stop in its table folder, and a start that finds no mark (the last
run was killed, or crashed) drops the local tables: Faust then restores them whole from the
changelog, which the commit barrier keeps ahead of every committed offset
(streams.changelog_barrier). A clean restart keeps the fast path (only what changed since).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kopilka.core.logging import get_logger

log = get_logger(__name__)

MARK = "stopped-cleanly"


class LocalTables:
    def __init__(self, tabledir: Path) -> None:
        self.tabledir = tabledir

    def open(self) -> bool:
        """Before the worker starts: keep the local tables only if the last run stopped cleanly
        (True), else drop them (False). The mark is removed: a kill from now on leaves none."""
        mark = self.tabledir / MARK
        kept = mark.exists()
        if kept:
            mark.unlink()
        elif self.tabledir.exists() and any(self.tabledir.iterdir()):
            shutil.rmtree(self.tabledir)
            log.warning(
                "local_tables_dropped",
                path=str(self.tabledir),
                reason="the last run did not stop cleanly: restoring from the changelog",
            )
        self.tabledir.mkdir(parents=True, exist_ok=True)
        return kept

    def stopped_cleanly(self) -> None:
        """After Faust has stopped, every table write acknowledged and the stores closed."""
        (self.tabledir / MARK).touch()
