"""The sink agents (`read_model_sink`, `audit_sink`, `dead_letter_store`), driven through Faust's
`agent.test_context()` on an app made by `create_app`, each with its sink replaced by a
recording one: a batch is acknowledged once flushed; what the sink cannot read, or the database
refuses even alone, is dead-lettered whole (or, for dead letters themselves, logged) and the
rest is written; a transient failure is retried, never dropped. The sinks' own writing is
tested in tests/sinks."""

from __future__ import annotations

import asyncio
import base64
from typing import ClassVar

import asyncpg
import pytest

from schemas.dead_letters import DeadLetter
from streams import dead_letters, read_model


class Recording:
    """A sink (sinks.base.Sink) that keeps what it flushed. It cannot read b"unreadable"; a
    flush holding b"refused" fails as Postgres does for bad data; `transient` flushes fail as
    a database going away does, first."""

    made: ClassVar[list[Recording]] = []
    transient: ClassVar[int] = 0

    def __init__(self, pool) -> None:
        self.pool, self.buffer, self.flushed, self.closed = pool, [], [], False
        Recording.made.append(self)

    async def setup(self) -> None:
        pass

    def add(self, value: bytes) -> None:
        if value == b"unreadable":
            raise ValueError("not a record this sink knows")
        self.buffer.append(value)

    async def flush(self) -> int:
        if Recording.transient:
            Recording.transient -= 1
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost")
        if b"refused" in self.buffer:
            raise asyncpg.exceptions.CheckViolationError("new row violates check constraint")
        self.flushed.append(list(self.buffer))
        written, self.buffer = len(self.buffer), []
        return written

    def clear(self) -> None:
        self.buffer = []

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def sinks(stream_app, sent, as_from_the_consumer, monkeypatch) -> list[Recording]:
    monkeypatch.setattr(Recording, "made", [])
    monkeypatch.setattr(Recording, "transient", 0)
    for module, name in (
        (read_model, "ReadModelSink"),
        (read_model, "AuditSink"),
        (dead_letters, "DeadLetterSink"),
    ):
        monkeypatch.setattr(module, name, Recording)
    dead_letters.register(stream_app)
    read_model.register(stream_app)
    return Recording.made


async def put_all(agent, *values: bytes) -> list:
    async with agent.test_context() as ctx:
        events = [await ctx.put(value, key=b"k") for value in values]
        for _ in range(300):
            if all(e.message.acked for e in events):
                break
            await asyncio.sleep(0.01)
    return events


@pytest.mark.parametrize("agent", ["read_model_sink", "audit_sink"])
async def test_a_batch_is_written_then_acknowledged_and_the_sink_closed(
    stream_app, sinks, sent, agent
):
    events = await put_all(stream_app.app.agents[f"streams.read_model.{agent}"], b"e1", b"e2")
    assert all(e.message.acked for e in events)
    [sink] = sinks
    assert [v for batch in sink.flushed for v in batch] == [b"e1", b"e2"]
    assert sink.pool == stream_app.resources.pool and sink.closed
    assert "kopilka.dead-letters" not in sent


async def test_what_the_sink_cannot_read_or_the_database_refuses_is_dead_lettered_whole(
    stream_app, sinks, sent
):
    events = await put_all(
        stream_app.app.agents["streams.read_model.read_model_sink"],
        b"e1",
        b"unreadable",
        b"refused",
        b"e2",
    )
    assert all(e.message.acked for e in events)
    [sink] = sinks
    assert sorted(v for batch in sink.flushed for v in batch) == [b"e1", b"e2"]
    letters = [DeadLetter.from_bytes(value) for _, value in sent["kopilka.dead-letters"]]
    assert [(d.stage, d.code, base64.b64decode(d.value_b64)) for d in letters] == [
        ("sink.postgres", "unreadable_record", b"unreadable"),
        ("sink.postgres", "refused_by_database", b"refused"),
    ]
    assert letters[1].error.startswith("CheckViolationError")


async def test_a_database_away_is_waited_for_and_nothing_dropped(stream_app, sinks, sent):
    Recording.transient = 2
    events = await put_all(stream_app.app.agents["streams.read_model.audit_sink"], b"a1")
    assert all(e.message.acked for e in events)
    assert sinks[0].flushed == [[b"a1"]] and Recording.transient == 0
    assert "kopilka.dead-letters" not in sent


async def test_dead_letters_are_stored_and_one_not_written_by_send_is_left_on_the_topic(
    stream_app, sinks, sent
):
    events = await put_all(
        stream_app.app.agents["streams.dead_letters.dead_letter_store"], b"dl1", b"unreadable"
    )
    assert all(e.message.acked for e in events)
    assert sinks[0].flushed == [[b"dl1"]]
    assert "kopilka.dead-letters" not in sent  # never a dead letter of a dead letter
