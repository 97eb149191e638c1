"""Kafka plumbing shared by the processes: topic creation and the ingest producer."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from kopilka.core import topics
from kopilka.core.logging import get_logger
from kopilka.core.partitioning import DefaultPartitioner
from kopilka.core.produce_requests import fuller_requests
from kopilka.core.settings import Settings

log = get_logger(__name__)


async def ensure_topics(settings: Settings, timeout_s: float = 60.0) -> None:
    """Create Kopilka's topics if missing, Faust's changelog and leader topics included
    (idempotent; safe from several processes at once)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_list)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(
                    spec.name,
                    num_partitions=spec.partitions or settings.topic_partitions,
                    replication_factor=settings.topic_replication_factor,
                    topic_configs=_topic_configs(spec, settings),
                )
                for spec in topics.created_up_front(settings.worker_id)
                if spec.name not in existing
            ]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
                log.info("topics_created", topics=[t.name for t in missing], **durability(settings))
            return
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


def _topic_configs(spec: topics.TopicSpec, settings: Settings) -> dict[str, str]:
    configs = {
        "max.message.bytes": str(settings.max_record_bytes + 64 * 1024),
        # with acks=all, a write is acknowledged once this many replicas have it
        "min.insync.replicas": str(settings.min_insync_replicas),
    }
    if spec.compacted:
        configs["cleanup.policy"] = "compact"
    return configs


def durability(settings: Settings) -> dict[str, int]:
    """What every topic (Kopilka's and Faust's) is created with; logged at start."""
    return {
        "replication_factor": settings.topic_replication_factor,
        "min_insync_replicas": settings.min_insync_replicas,
    }


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """acks=all + idempotence: a 202 means the record is on every in-sync replica, once.

    Records of many requests share a produce request without waiting for a timer: aiokafka
    keeps one produce request in flight per broker, and what arrives meanwhile is batched per
    partition. No `linger_ms`, so a lone request is not held back.
    The partitioner is Kafka's default (murmur2 of the key), computed more cheaply; a request
    takes every batch its broker leads once one is due (kopilka.core.produce_requests)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_list,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        partitioner=DefaultPartitioner(),
        max_request_size=settings.max_record_bytes + 64 * 1024,
        request_timeout_ms=int(settings.publish_timeout_s * 1000),
        retry_backoff_ms=100,
        client_id=f"{settings.worker_id}-ingest",
    )
    return fuller_requests(producer)


async def assign_whole_topic(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Assign every partition of `topic` to a group-less consumer (which must be started)."""
    for _ in range(100):
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(topic)
        if partitions:
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            return tps
        await asyncio.sleep(0.2)
    raise KafkaError(f"topic {topic} has no partitions")


def closed_connection(exc: BaseException) -> bool:
    """True for the error a request sent on a connection the broker just closed raises on
    uvloop (RuntimeError "... the handler is closed"), before aiokafka notices the close: aiokafka
    turns only OSError into a connection error, so this one passed through as a crash."""
    return isinstance(exc, RuntimeError) and "handler is closed" in str(exc)
