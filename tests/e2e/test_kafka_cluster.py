"""The local three-broker cluster of the fault suite (Stack.start_kafka_cluster, which runs
devservices.start_kafka_cluster): it forms, takes a topic with replication factor 3 and
min.insync.replicas 2, keeps taking acks=all writes with one broker killed -9, and takes the
broker back. Its own brokers on free ports; it needs nothing of the session's stack."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from kopilka.devstack.stack import Stack

pytestmark = pytest.mark.timeout(300)

TOPIC = "cluster.check"


@pytest.fixture
def stack(tmp_path):
    made = Stack(tmp_path / "stack")
    try:
        made.start_kafka_cluster(3)
        yield made
    finally:
        made.stop()
        shutil.rmtree(tmp_path / "stack", ignore_errors=True)


async def _describe(bootstrap: str) -> dict:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [topic] = await admin.describe_topics([TOPIC])
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, TOPIC, {"min.insync.replicas": None})]
        )
    finally:
        await admin.close()
    [resource] = response.to_object()["resources"]
    configs = {c["config_names"]: c["config_value"] for c in resource["config_entries"]}
    return {"topic": topic, "configs": configs}


async def _send(bootstrap: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=10000
    )
    await producer.start()
    try:
        for value in values:
            await asyncio.wait_for(producer.send_and_wait(TOPIC, value, partition=0), 30)
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        seen: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(seen) < expected and loop.time() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            seen += [record.value for record in batch.get(tp, [])]
        return seen
    finally:
        await consumer.stop()


async def _isr(bootstrap: str) -> list[int]:
    described = await _describe(bootstrap)
    [partition] = [p for p in described["topic"]["partitions"] if p["partition"] == 0]
    return sorted(partition["isr"])


async def test_three_brokers_form_a_cluster_that_survives_losing_one(stack):
    cluster = stack.kafka_cluster
    assert stack.env["KAFKA_BOOTSTRAP_SERVERS"] == cluster.bootstrap
    assert len(cluster.bootstrap.split(",")) == 3
    assert stack.env["KOPILKA_TOPIC_REPLICATION_FACTOR"] == "3"
    assert sorted(p.name for p in stack.processes) == ["kafka-1", "kafka-2", "kafka-3"]
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(TOPIC, 3, 3, topic_configs={"min.insync.replicas": "2"})]
        )
    finally:
        await admin.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:  # the new topic's metadata reaches every broker in a moment
        described = await _describe(cluster.bootstrap)
        partitions = described["topic"]["partitions"]
        led = len(partitions) == 3 and all(p["leader"] >= 1 for p in partitions)
        if led and "min.insync.replicas" in described["configs"]:  # every broker knows it
            break
        assert loop.time() < deadline, f"the topic never got 3 led partitions: {described}"
        await asyncio.sleep(0.5)
    assert described["configs"]["min.insync.replicas"] == "2"
    assert all(sorted(p["replicas"]) == [1, 2, 3] for p in partitions)

    await _send(cluster.bootstrap, [b"before-1", b"before-2"])
    leader = next(p["leader"] for p in partitions if p["partition"] == 0)
    stack.kill_process(f"kafka-{leader}")  # kill -9 the leader of the partition we write to
    assert not cluster.brokers[leader - 1].alive()
    survivors = ",".join(
        f"127.0.0.1:{port}" for node, port in enumerate(cluster.ports, 1) if node != leader
    )
    await _send(survivors, [b"during-1", b"during-2"])  # two in-sync replicas left: enough

    restarted = stack.restart(f"kafka-{leader}")
    assert restarted.alive() and cluster.brokers[leader - 1] is restarted
    deadline = loop.time() + 60
    while await _isr(cluster.bootstrap) != [1, 2, 3]:  # the restarted broker catches up
        assert loop.time() < deadline, "the restarted broker never rejoined the ISR"
        await asyncio.sleep(1)
    await _send(cluster.bootstrap, [b"after-1"])
    values = await _read_all(cluster.bootstrap, 5)
    assert values == [b"before-1", b"before-2", b"during-1", b"during-2", b"after-1"]
