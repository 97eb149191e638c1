"""kopilka.core.fetch_sessions: fetches name only the partitions that moved, and lose nothing."""

from __future__ import annotations

import asyncio
import types
import uuid

import aiokafka.consumer.consumer as aiokafka_consumer
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.fetch import FetchRequest, FetchRequest_v4, FetchRequest_v11
from aiokafka.structs import TopicPartition

from kopilka.core import fetch_sessions
from kopilka.core.fetch_sessions import FetchSession, SessionFetcher, SessionFetchRequest
from kopilka.core.settings import Settings


def _request(offsets: dict[tuple[str, int], int]) -> FetchRequest:
    topics: dict[str, list[tuple[int, int, int]]] = {}
    for (topic, partition), offset in offsets.items():
        topics.setdefault(topic, []).append((partition, offset, 1024))
    return FetchRequest(500, 1, 52428800, 0, list(topics.items()))


class _Answer:
    """A Fetch response: its session, its error and the (topic, [(partition, ...)]) it names."""

    def __init__(self, session_id: int = 0, error_code: int = 0, topics=()) -> None:
        self.session_id, self.error_code, self.topics = session_id, error_code, list(topics)


def _wire(struct) -> tuple[int, int, dict, dict]:
    """(session id, epoch, {(topic, partition): offset} sent, {topic: [forgotten]})."""
    sent = {(t, p[0]): p[2] for t, parts in struct.topics for p in parts}  # v11: offset third
    return struct.session_id, struct.session_epoch, sent, dict(struct.forgotten_topics_data)


START = {("a", 0): 5, ("a", 1): 7, ("b", 0): 0}
HELD = {k: (v, 1024) for k, v in START.items()}


def _opened(session_id: int = 42) -> FetchSession:
    session = FetchSession()
    first = SessionFetchRequest(_request(START), session)
    first.build(FetchRequest_v11)
    session.answered(first, _Answer(session_id=session_id))
    return session


def test_the_first_fetch_is_full_and_opens_a_session():
    session = FetchSession()
    request = SessionFetchRequest(_request(START), session)
    assert _wire(request.build(FetchRequest_v11)) == (0, 0, START, {})
    session.answered(request, _Answer(session_id=42))
    assert (session.id, session.epoch, session.held) == (42, 1, HELD)


def test_then_a_fetch_names_only_what_moved_and_what_is_forgotten():
    session = _opened()
    moved = {("a", 0): 9, ("a", 1): 7, ("c", 3): 0}  # a-0 moved, c-3 new, b-0 paused
    request = SessionFetchRequest(_request(moved), session)
    assert _wire(request.build(FetchRequest_v11)) == (
        42,
        1,
        {("a", 0): 9, ("c", 3): 0},
        {"b": [0]},
    )
    assert request.topics == _request(moved).topics  # aiokafka still sees the whole list
    session.answered(request, _Answer(session_id=42, topics=[("a", [(0, 0, 12)])]))
    assert session.epoch == 2 and set(session.held) == set(moved)

    same = SessionFetchRequest(_request(moved), session)
    assert _wire(same.build(FetchRequest_v11)) == (42, 2, {}, {})


@pytest.mark.parametrize(("error", "closes"), [(71, 42), (70, 0)])
def test_a_session_error_starts_a_new_session_closing_the_old_one(error, closes):
    session = _opened()
    request = SessionFetchRequest(_request(START), session)
    request.build(FetchRequest_v11)
    session.answered(request, _Answer(session_id=42, error_code=error))
    assert (session.id, session.epoch, session.held) == (0, 0, {})
    # a full fetch; naming the old session with epoch 0 closes it, unless the broker lost it
    full = SessionFetchRequest(_request(START), session)
    assert _wire(full.build(FetchRequest_v11)) == (closes, 0, START, {})
    session.answered(full, _Answer(session_id=43))
    assert (session.id, session.closing) == (43, 0)


@pytest.mark.parametrize("failure", [TimeoutError, asyncio.CancelledError])
async def test_a_failed_or_cancelled_send_drops_the_session(failure):
    class Broken:
        async def send(self, node_id, request, **kwargs):
            raise failure

    session = _opened()
    with pytest.raises(failure):
        await fetch_sessions._SessionClient(Broken()).send(
            1, SessionFetchRequest(_request(START), session)
        )
    assert (session.id, session.epoch, session.closing) == (0, 0, 42)


async def test_a_connection_the_broker_closed_under_a_fetch_is_a_connection_error():
    class Closed:
        async def send(self, node_id, request, **kwargs):
            raise RuntimeError(
                "unable to perform operation on <TCPTransport>; the handler is closed"
            )

    session = _opened()
    with pytest.raises(KafkaConnectionError):  # which aiokafka's fetcher retries
        await fetch_sessions._SessionClient(Closed()).send(
            1, SessionFetchRequest(_request(START), session)
        )
    assert session.id == 0


def test_an_answer_naming_what_the_session_does_not_hold_is_not_trusted():
    session = _opened()
    request = SessionFetchRequest(_request(START), session)
    request.build(FetchRequest_v11)
    answer = _Answer(session_id=42, topics=[("a", [(0, 0, 9), (5, 0, 9)]), ("z", [(1, 0, 9)])])
    session.answered(request, answer)
    assert answer.topics == [("a", [(0, 0, 9)]), ("z", [])]  # aiokafka could not place them
    assert session.id == 0

    other = _opened()
    request = SessionFetchRequest(_request(START), other)
    request.build(FetchRequest_v11)
    other.answered(request, _Answer(session_id=7))  # another session's answer
    assert other.id == 0


def test_no_session_given_means_full_fetches_and_old_brokers_get_aiokafkas_own():
    session = FetchSession()
    request = SessionFetchRequest(_request(START), session)
    request.build(FetchRequest_v11)
    session.answered(request, _Answer(session_id=0))  # the broker's session cache is full
    assert (session.id, session.epoch) == (0, 0)

    old = SessionFetchRequest(_request(START), FetchSession(id=42, epoch=3))
    struct = old.build(FetchRequest_v4)
    assert old.sessionless and old.session.id == 0
    assert struct.encode() == _request(START).build(FetchRequest_v4).encode()


def test_the_epoch_wraps_to_one():
    session = FetchSession(id=42, epoch=2**31 - 1, held={})
    request = SessionFetchRequest(_request({}), session)
    request.build(FetchRequest_v11)
    session.answered(request, _Answer(session_id=42))
    assert session.epoch == 1


def test_left_out_partitions_are_stamped_once_a_second_for_each_broker():
    class State:
        timestamp = None

    states = {TopicPartition(t, p): State() for t, p in START}

    class Assignment:
        def state_value(self, tp):
            return states[tp]

    fetcher = types.SimpleNamespace(_stamped={})
    for node in (1, 2):  # one broker's stamp does not stand for another's
        for _ in range(2):
            request = SessionFetchRequest(_request(START), _opened())
            for state in states.values():
                state.timestamp = None
            SessionFetcher._stamp(fetcher, Assignment(), node, request)
            stamped = all(state.timestamp is not None for state in states.values())
            assert stamped is (_ == 0)  # the second within the second is skipped


def test_an_answer_aiokafka_set_aside_is_noticed():
    class State:
        has_valid_position = True

        def __init__(self, position: int) -> None:
            self.position = position

    positions = {TopicPartition("a", 0): 5, TopicPartition("a", 1): 7}

    class Assignment:
        def state_value(self, tp):
            return State(positions[tp])

    request = SessionFetchRequest(_request(START), _opened())
    request.response = _Answer(session_id=42, topics=[("a", [(0, 0, 9), (1, 0, 9)])])
    assert not fetch_sessions._dropped(Assignment(), request)
    positions[TopicPartition("a", 1)] = 8  # a seek while the fetch waited: set aside
    assert fetch_sessions._dropped(Assignment(), request)


def test_install_follows_the_setting(monkeypatch):
    monkeypatch.setattr(aiokafka_consumer, "Fetcher", Fetcher)
    fetch_sessions.install(Settings(_env_file=None, kafka_fetch_sessions=False))
    assert aiokafka_consumer.Fetcher is Fetcher
    fetch_sessions.install(Settings(_env_file=None))
    assert aiokafka_consumer.Fetcher is SessionFetcher


# ---------------------------------------------------------------- on the real broker

PARTITIONS = 4


@pytest.fixture
async def topic(stack) -> tuple[str, list[str]]:
    bootstrap = stack.settings().bootstrap_list
    name = f"fetch-sessions-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        await admin.close()
    return name, bootstrap


async def _produce(bootstrap, topic: str, partition: int, values: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value.encode(), partition=partition)
    finally:
        await producer.stop()


async def _take(consumer: AIOKafkaConsumer, n: int, timeout_s: float = 20.0) -> list[tuple]:
    got: list[tuple] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < n:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in sorted(batches.items()):
                got += [(tp.partition, r.offset, r.value.decode()) for r in records]
    await asyncio.sleep(0.3)  # and nothing more comes
    for tp, records in (await consumer.getmany(timeout_ms=300)).items():
        got += [(tp.partition, r.offset, r.value.decode()) for r in records]
    return got


async def _highwaters_right(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
    """Every partition's highwater, as aiokafka keeps it from fetches, is the log's end."""
    ends = await consumer.end_offsets(tps)
    async with asyncio.timeout(10):
        while any(consumer.highwater(tp) != ends[tp] for tp in tps):
            await consumer.getmany(timeout_ms=100)
    assert {tp: consumer.highwater(tp) for tp in tps} == ends


@pytest.mark.connected
async def test_a_consumer_in_a_session_gets_every_record_once_across_seeks_and_pauses(
    topic, monkeypatch
):
    name, bootstrap = topic
    monkeypatch.setattr(aiokafka_consumer, "Fetcher", SessionFetcher)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=300)
    await consumer.start()
    try:
        tps = [TopicPartition(name, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for p in range(PARTITIONS):
            await _produce(bootstrap, name, p, [f"{p}-{i}" for i in range(3)])
        first = await _take(consumer, 3 * PARTITIONS)
        assert sorted(first) == sorted(
            (p, i, f"{p}-{i}") for p in range(PARTITIONS) for i in range(3)
        )
        await _highwaters_right(consumer, tps)

        sessions = consumer._fetcher._sessions
        assert len(sessions) == 1 and next(iter(sessions.values())).id != 0  # a session is open

        # one partition at a time: each fetch now names only what moved
        for round_ in range(3):
            await _produce(bootstrap, name, round_ % PARTITIONS, [f"r{round_}"])
            got = await _take(consumer, 1)
            assert got == [(round_ % PARTITIONS, 3 + round_ // PARTITIONS, f"r{round_}")]
        await _highwaters_right(consumer, tps)

        # a partition paused is forgotten by the session, then named again from its position
        consumer.pause(tps[3])
        await _produce(bootstrap, name, 3, ["while-paused"])
        await _produce(bootstrap, name, 2, ["beside-it"])
        assert await _take(consumer, 1) == [(2, 4, "beside-it")]
        consumer.resume(tps[3])
        assert await _take(consumer, 1) == [(3, 3, "while-paused")]
        await _highwaters_right(consumer, tps)

        # a seek back is named in the next fetch: the records come again, from there
        consumer.seek(tps[0], 1)
        assert await _take(consumer, 3) == [(0, 1, "0-1"), (0, 2, "0-2"), (0, 3, "r0")]

        # a seek while a fetch waits on the broker: aiokafka sets its answer aside, and its
        # highwater with it; the session starts again, so the highwater still comes
        await asyncio.sleep(0.1)  # the next fetch is waiting at the broker
        consumer.seek(tps[1], 0)
        await _produce(bootstrap, name, 1, ["during-the-fetch"])
        again = await _take(consumer, 5)
        assert [v for _, _, v in again] == ["1-0", "1-1", "1-2", "r1", "during-the-fetch"]
        await _highwaters_right(consumer, tps)

        # the broker loses the session (a wrong epoch): a full fetch opens a new one, no loss
        session = next(iter(sessions.values()))
        old_id, session.epoch = session.id, session.epoch + 1000
        await _produce(bootstrap, name, 1, ["after-reset"])
        assert await _take(consumer, 1) == [(1, 5, "after-reset")]
        await _produce(bootstrap, name, 1, ["in-the-new-session"])
        assert await _take(consumer, 1) == [(1, 6, "in-the-new-session")]
        assert session.id not in (0, old_id)

        # assigned again while paused (a new assignment, no fetch in flight): its partitions
        # start with no highwater, and get one
        consumer.pause(*tps)
        await asyncio.sleep(0.5)
        positions = {tp: await consumer.position(tp) for tp in tps}
        consumer.assign(tps)
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        await _produce(bootstrap, name, 0, ["reassigned"])
        assert await _take(consumer, 1) == [(0, 4, "reassigned")]
        await _highwaters_right(consumer, tps)
    finally:
        await consumer.stop()
