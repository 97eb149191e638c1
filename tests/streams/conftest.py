"""Fixtures of the stream unit tests: an app made by `streams.app.create_app` with an in-memory
store and no broker behind it, for agents driven through Faust's `agent.test_context()`."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import fields
from types import SimpleNamespace

import pytest
from faust.streams import _current_event
from faust.types.tuples import FutureMessage
from faust.types.tuples import Message as FaustMessage

from kopilka.core.settings import Settings
from streams.app import StreamApp, create_app


@pytest.fixture
def stream_app(tmp_path) -> StreamApp:
    """A fresh app (nothing registered on it), its settings the defaults, not the environment's."""
    settings = Settings(_env_file=None, worker_id="unit", worker_data_dir=tmp_path)
    return create_app(settings, store="memory://")


@pytest.fixture
def as_from_the_consumer(monkeypatch):
    """Messages put by test_context start with no references; a consumer's start with one per
    stream reading the topic (faust.transport.conductor). Give them one, as the real flow does."""
    original = FaustMessage.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.refcount = 1

    monkeypatch.setattr(FaustMessage, "__init__", init)


@pytest.fixture
def sent(stream_app, monkeypatch) -> dict[str, list[tuple]]:
    """What the app's agents send, by topic name, in order: every topic's `send` (and the ledger
    table's changelog writes) records the record instead of producing it, and answers as the
    broker does (a settled future); none of it stays pending for the commit barrier."""
    records: dict[str, list[tuple]] = {}
    for field in fields(stream_app.topics):
        topic = getattr(stream_app.topics, field.name)
        monkeypatch.setattr(topic, "send", _recorded_send(records, topic.get_topic_name()))
    changelog = stream_app.state_table.changelog_topic
    monkeypatch.setattr(
        changelog, "send_soon", _recorded_send_soon(records, changelog.get_topic_name())
    )
    return records


def _recorded_send(records: dict[str, list[tuple]], topic: str):
    async def send(*, key=None, value=None, **kwargs):
        records.setdefault(topic, []).append((key, value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    return send


def _recorded_send_soon(records: dict[str, list[tuple]], topic: str):
    def send_soon(*, key, value, partition, **kwargs):
        """The ledger table's writes (Faust's `send_changelog`), as the broker took them."""
        records.setdefault(topic, []).append((key, value))
        fut = FutureMessage(SimpleNamespace(partition=partition))
        fut.set_result(None)
        return fut

    return send_soon


class _Processed:
    """Stands for the record an agent is processing (Faust keeps it by a weak reference)."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


@pytest.fixture
def processing():
    """`processing(partition)`: from now on, as if an agent were processing a record of that
    partition (Faust's current event, which picks a table's partition); undone at the end."""
    kept: list[_Processed] = []

    def process(partition: int) -> None:
        kept.append(_Processed(partition))
        _current_event.set(weakref.ref(kept[-1]))

    yield process
    _current_event.set(None)
