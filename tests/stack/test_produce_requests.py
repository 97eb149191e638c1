"""kopilka.core.produce_requests: a broker sent to takes every batch it leads."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.structs import TopicPartition

from kopilka.core.kafka import make_producer
from kopilka.core.produce_requests import NodeDrainingAccumulator, fuller_requests
from kopilka.core.settings import Settings

LEADERS = {
    TopicPartition("loyalty.events", 0): 1,
    TopicPartition("loyalty.events", 1): 1,
    TopicPartition("loyalty.commands", 7): 1,
    TopicPartition("loyalty.events", 2): 2,
}
OLD = TopicPartition("loyalty.events", 0)


class Cluster:
    def leader_for_partition(self, tp: TopicPartition) -> int | None:
        return LEADERS.get(tp)


async def drained(kind: type[MessageAccumulator], *, ignore: set[int] | None = None):
    """What one drain takes when partition 0's batch has lingered long enough and the other
    batches are a moment old (linger 50 ms)."""
    acc = kind(Cluster(), 16384, 0, 30, loop=asyncio.get_running_loop(), linger_ms=50)
    for tp in LEADERS:
        await acc.add_message(tp, b"k", b"v", timeout=1)
    acc._batches[OLD][0]._linger_time = 0  # as if it were 50 ms old
    nodes, _ = acc.drain_by_nodes(ignore_nodes=ignore or set())
    return {
        node: sorted(f"{tp.topic}-{tp.partition}" for tp in batches)
        for node, batches in nodes.items()
    }


async def test_aiokafka_sends_only_the_batches_that_lingered_enough():
    assert await drained(MessageAccumulator) == {1: ["loyalty.events-0"]}


async def test_once_one_batch_is_due_its_broker_takes_all_of_its_batches():
    assert await drained(NodeDrainingAccumulator) == {
        1: ["loyalty.commands-7", "loyalty.events-0", "loyalty.events-1"]
    }  # broker 2 has nothing due: its batch lingers on


async def test_a_broker_with_a_request_in_flight_takes_nothing():
    assert await drained(NodeDrainingAccumulator, ignore={1}) == {}


@pytest.mark.parametrize("linger_ms", [0, 5])
async def test_the_producer_drains_by_broker_and_keeps_its_settings(linger_ms):
    producer = fuller_requests(
        AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", linger_ms=linger_ms)
    )
    assert isinstance(producer._message_accumulator, NodeDrainingAccumulator)
    assert producer._message_accumulator._linger_time == linger_ms / 1000
    await producer.stop()


async def test_the_ingress_and_the_tools_produce_the_same_way():
    producer = make_producer(Settings())
    assert isinstance(producer._message_accumulator, NodeDrainingAccumulator)
    await producer.stop()
