"""The Faust application: topics, the ledger table, and the resources its agents share.

Every topic carries raw bytes (our own versioned JSON), never Faust's pickled or wrapped models,
so any Kafka client can read them. Agents live in `streams.normalize`, `streams.ledger` and
`sinks.postgres`; importing `streams.worker` wires them all onto this app.
"""

from __future__ import annotations

import asyncio

import asyncpg
import faust

from kopilka import db, topics
from kopilka.settings import get_settings

settings = get_settings()

app = faust.App(
    settings.worker_id,
    broker=[f"kafka://{server}" for server in settings.bootstrap_list],
    store="memory://",
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication_factor,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    broker_commit_every=1000,
    broker_commit_interval=1.0,
    web_enabled=False,
    # Our sinks are idempotent on event_id: don't hold a rebalance for an in-flight event.
    stream_wait_empty=False,
)


def raw_topic(spec: topics.TopicSpec) -> faust.TopicT:
    return app.topic(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )


webhooks_raw = raw_topic(topics.WEBHOOKS_RAW)
webhooks_audit = raw_topic(topics.WEBHOOKS_AUDIT)
webhooks_dead = raw_topic(topics.WEBHOOKS_DEAD)
commands = raw_topic(topics.COMMANDS)
events = raw_topic(topics.EVENTS)

# One entry per customer ("tenant:customer" -> CustomerLedger JSON), co-partitioned with commands.
ledgers = app.Table(
    "customer-ledgers",
    schema=faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    ),
    partitions=settings.topic_partitions,
)


class Resources:
    """The Postgres pool, opened on first use by whichever agent needs it first."""

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await db.create_pool(
                        settings.database_url.get_secret_value(), min_size=1, max_size=8
                    )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


resources = Resources()


@app.on_before_shutdown.connect
async def _close_resources(sender, **kwargs) -> None:
    await resources.close()
