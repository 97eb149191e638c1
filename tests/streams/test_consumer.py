"""StreamConsumer's acknowledgements: a record skipped or finished across a rebalance is released
but never counted towards the committed offset (streams/consumer.py)."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types import TP
from faust.types.tuples import Message

from streams.consumer import StreamConsumer

TOPIC = TP("webhooks.raw", 0)


@pytest.fixture
def consumer():
    return _consumer()


@pytest.fixture
async def looped():
    """The consumer made in the test's loop (its flow events wake that loop)."""
    return _consumer()


def _consumer() -> StreamConsumer:
    app = faust.App("consumer-test", broker="kafka://127.0.0.1:1", store="memory://")
    app.consumer_generation_id = 3
    app.flow_control.resume()
    app.topics._acking_topics.add(TOPIC.topic)  # what subscribing an agent to it does
    consumer = StreamConsumer(
        app.transport,
        callback=lambda message: None,
        on_partitions_revoked=lambda revoked: None,
        on_partitions_assigned=lambda assigned: None,
    )
    consumer._committed_offset[TOPIC] = 10
    return consumer


def delivered(consumer: StreamConsumer, offset: int, generation: int = 3) -> Message:
    message = Message(
        TOPIC.topic, TOPIC.partition, offset, 0.0, 0, None, b"k", b"v", None,
        tp=TOPIC, generation_id=generation,
    )  # fmt: skip
    consumer._unacked_messages.add(message)
    return message


def test_a_record_processed_in_its_generation_counts(consumer):
    assert consumer.ack(delivered(consumer, 10))
    assert consumer.ack(delivered(consumer, 11))
    assert consumer._new_offset(TOPIC) == 12


def test_a_record_of_an_older_generation_is_released_but_not_counted(consumer):
    consumer.ack(delivered(consumer, 10))
    stale = delivered(consumer, 11, generation=2)
    assert not consumer.ack(stale)
    assert stale.acked and stale not in consumer._unacked_messages  # a rebalance can go on
    assert consumer.ack(delivered(consumer, 12))
    assert consumer._new_offset(TOPIC) == 11  # never past the record that was skipped


def test_a_record_skipped_while_the_flow_is_suspended_is_not_committed(consumer):
    consumer.app.flow_control.suspend()
    skipped = delivered(consumer, 10)
    assert not consumer.ack(skipped)
    assert skipped not in consumer._unacked_messages
    consumer.app.flow_control.resume()
    assert consumer.ack(delivered(consumer, 11))
    assert consumer._new_offset(TOPIC) is None  # offset 10 comes again after the re-seek
    assert consumer.ack(delivered(consumer, 10))  # ... and counts then
    assert consumer._new_offset(TOPIC) == 12


async def test_a_partition_never_committed_commits_only_from_the_start_of_its_log(
    consumer, monkeypatch
):
    consumer._committed_offset[TOPIC] = None
    assert consumer.ack(delivered(consumer, 5))  # the first record this worker was handed
    assert consumer._new_offset(TOPIC) is None  # where its log starts is not known yet

    async def earliest_offsets(*tps):
        return {tp: 0 for tp in tps}

    seeks = []

    async def seek(tp, offset):
        seeks.append((tp, offset))

    monkeypatch.setattr(consumer, "earliest_offsets", earliest_offsets)
    monkeypatch.setattr(consumer, "_seek", seek)
    await consumer._from_the_start([TOPIC])
    assert seeks == [(TOPIC, 0)]
    assert consumer._positioned[TOPIC] == 3  # its records may be handed over from now on
    assert consumer._new_offset(TOPIC) is None  # records 0-4 are not done: nothing commits
    for offset in range(5):
        consumer.ack(delivered(consumer, offset))
    assert consumer._new_offset(TOPIC) == 6


def test_a_record_not_handed_over_is_where_its_partition_goes_back_to(consumer):
    consumer._not_handed(TOPIC, 7)
    consumer._not_handed(TOPIC, 8)
    assert consumer._next_offset[TOPIC] == 7 and consumer._reposition


async def test_a_record_handed_over_without_waiting_costs_no_task(looped):
    got = []

    async def deliver(message):
        got.append(message)

    assert await looped._hand_over(deliver, "r1")
    assert await looped._hand_over(deliver, "r2")
    assert got == ["r1", "r2"] and looped._interrupt is None


async def test_a_record_whose_delivery_waits_is_handed_over_and_one_waiter_serves_all(looped):
    got = []

    async def deliver(message):
        await asyncio.sleep(0)  # the stream's queue had no room at first
        got.append(message)
        return "ignored"

    assert await looped._hand_over(deliver, "r1")
    waiter = looped._interrupt
    assert await looped._hand_over(deliver, "r2")
    assert looped._interrupt is waiter and not waiter.done()
    assert got == ["r1", "r2"]
    waiter.cancel()


async def test_a_hand_over_the_flow_stops_is_abandoned_and_not_counted(looped):
    stuck, cancelled = asyncio.Event(), []

    async def deliver(message):  # the stream's buffer is full
        try:
            await stuck.wait()
        except asyncio.CancelledError:
            cancelled.append(message)
            raise

    handing = asyncio.ensure_future(looped._hand_over(deliver, "r1"))
    await asyncio.sleep(0.01)
    assert not handing.done()
    looped.suspend_flow.set()  # a rebalance
    assert await asyncio.wait_for(handing, 1) is False
    assert cancelled == ["r1"]
    looped.suspend_flow.clear()  # the flow resumes: a fresh waiter, records go again

    async def deliver_now(message):
        pass

    assert await looped._hand_over(deliver_now, "r2")
    looped._interrupt.cancel()


async def test_nothing_counts_as_handed_over_once_the_consumer_stops(looped):
    async def deliver(message):
        pass

    looped._stopped.set()
    assert await looped._hand_over(deliver, "r1") is False


async def test_a_delivery_that_fails_raises_as_before(looped):
    async def deliver(message):
        raise RuntimeError("a bug in a stream")

    with pytest.raises(RuntimeError):
        await looped._hand_over(deliver, "r1")


async def test_a_delivery_that_fails_after_waiting_raises_as_before(looped):
    async def deliver(message):
        await asyncio.sleep(0.001)
        raise RuntimeError("a bug in a stream")

    with pytest.raises(RuntimeError):
        await looped._hand_over(deliver, "r1")
    looped._interrupt.cancel()
