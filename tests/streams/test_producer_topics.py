"""The worker's producer tracks the metadata of every topic it writes to (streams.app)."""

from __future__ import annotations

import asyncio

from kopilka.core import topics
from streams.app import _track_topics


class _Client:
    """aiokafka's client as far as add_topic goes: the topic is tracked from then on."""

    def __init__(self) -> None:
        self.tracked: set[str] = {"kopilka-ledger-state-changelog"}  # what Faust created

    def add_topic(self, topic: str) -> asyncio.Future:
        done = asyncio.get_running_loop().create_future()
        self.tracked.add(topic)
        done.set_result(True)
        return done


async def test_every_topic_the_worker_writes_to_is_tracked_besides_the_changelog():
    client = _Client()
    await _track_topics(client)
    assert {spec.name for spec in topics.ALL} | {"kopilka-ledger-state-changelog"} == client.tracked
    assert {topics.EVENTS.name, topics.COMMANDS.name, topics.WEBHOOKS_AUDIT.name} <= client.tracked
