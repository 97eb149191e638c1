"""`Prefer: wait=N`: hold the answer until the pipeline has processed the request, up to N s.

Each ingress process follows `loyalty.outcomes` (every partition, from its end at start-up;
no consumer group, so every replica sees every outcome) and completes the waits registered by
its own requests. A wait is registered *before* the raw record is published, so its outcomes
cannot slip past. When the time is up the request is answered 202 as usual: nothing is lost,
the outcome simply arrives later (as events, webhooks, and in the read API).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer

from kopilka.core import topics
from kopilka.core.kafka import assign_whole_topic
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings

log = get_logger(__name__)


@dataclass
class Pending:
    expected: set[str]
    outcomes: dict[str, dict] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, outcome: dict) -> None:
        self.outcomes.setdefault(outcome["command_id"], outcome)
        if self.expected <= self.outcomes.keys():
            self.done.set()


class OutcomeWaiter:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pending: dict[str, Pending] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_list,
            enable_auto_commit=False,
            group_id=None,
            client_id=f"{self._settings.worker_id}-ingest-outcomes",
            # the broker answers as soon as an outcome is there: a long wait adds no latency,
            # only saves empty fetches of every partition (50 a second at 20 ms)
            fetch_max_wait_ms=500,
        )
        await consumer.start()
        tps = await assign_whole_topic(consumer, topics.OUTCOMES.name)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before any wait is registered
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker away: keep trying, waits just time out
                log.warning("outcomes_fetch_failed", error=type(exc).__name__)
                await asyncio.sleep(1)
                continue
            for records in batch.values():
                for record in records:
                    pending = self._pending.get((record.key or b"").decode())
                    if pending is not None:
                        try:
                            pending.add(orjson.loads(record.value))
                        except (ValueError, KeyError):
                            log.error("outcome_unreadable")

    def register(self, request_id: str, expected: set[str]) -> Pending:
        pending = Pending(expected)
        self._pending[request_id] = pending
        return pending

    async def wait(self, request_id: str, pending: Pending, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await pending.done.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._pending.pop(request_id, None)

    def forget(self, request_id: str) -> None:
        self._pending.pop(request_id, None)


def prefer_wait(header: str | None, limit_s: float) -> float | None:
    """Seconds asked by `Prefer: wait=N` (RFC 7240), capped at `limit_s`; None when not asked."""
    if not header:
        return None
    for preference in header.split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                return None
            return min(max(seconds, 0.0), limit_s) if seconds == seconds else None
    return None
