"""Dead letters into Postgres behind the sink protocol (`sinks.base.Sink`).

The agent in `streams.dead_letters` feeds `DeadLetterSink` from `kopilka.dead-letters`; it writes
through `kopilka.directory.dead_letters.DeadLetterStore`, the table's one home (which the CLI and
the admin API read).
"""

from __future__ import annotations

import asyncpg

from kopilka.directory.dead_letters import DeadLetterStore
from schemas.dead_letters import DeadLetter
from sinks.postgres import Connect, PostgresSink


class DeadLetterSink(PostgresSink):
    """`kopilka.dead-letters` records -> `DeadLetterStore.add_many`, in batches."""

    def __init__(self, connect: Connect | None = None) -> None:
        super().__init__(connect)
        self.letters: list[DeadLetter] = []

    def add(self, value: bytes) -> None:
        self.letters.append(DeadLetter.from_bytes(value))  # ValueError: not a dead letter

    def clear(self) -> None:
        self.letters = []

    async def flush(self, pool: asyncpg.Pool | None = None) -> int:
        """Stores the batch; returns how many letters it held (those stored before included)."""
        if not self.letters:
            return 0
        await DeadLetterStore(self._target(pool)).add_many(self.letters)
        written = len(self.letters)
        self.letters = []
        return written
