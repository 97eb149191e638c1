"""kopilka.core.partitioning must place every key exactly where Kafka's default partitioner does."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner as AiokafkaPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from kopilka.core.partitioning import DefaultPartitioner, murmur2


def test_murmur2_matches_aiokafka_for_every_length():
    rng = random.Random(9)
    for _ in range(2_000):
        data = rng.randbytes(rng.randrange(0, 130))
        assert murmur2.__wrapped__(data) == aiokafka_murmur2(data)
        assert murmur2(data) == aiokafka_murmur2(data)  # and through the cache


def test_known_value_of_the_java_client():
    # org.apache.kafka.common.utils.Utils.murmur2("21".getBytes()) == -973932308
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF


def test_partitioner_places_keys_as_aiokafka_does():
    ours, theirs = DefaultPartitioner(), AiokafkaPartitioner()
    partitions = list(range(32))
    for i in range(500):
        key = f"tenant-{i % 7}:{i:024x}".encode()
        assert ours(key, partitions, partitions) == theirs(key, partitions, partitions)
    assert ours(None, partitions, [5]) == 5  # no key: any available partition
