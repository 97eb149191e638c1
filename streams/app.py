"""The Faust application: topics, the ledger table, and the resources its agents share.

Nothing is built at import: `create_app(settings)` makes the app and returns it as a `StreamApp`
with its topics, its table and its resources. Every topic carries raw bytes (our own versioned
JSON), never Faust's pickled or wrapped models, so any Kafka client can read them. Agents live
in `streams.normalize`, `streams.ledger`, `streams.read_model` (feeding the sinks of `sinks/`)
and the other agent modules; each has a `register(stream_app)` that puts its agents, timers and
tasks on the app, and `streams.worker` registers them all.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import faust
import orjson
from faust.serializers import codecs
from faust.transport.drivers import aiokafka as faust_aiokafka

from kopilka.core import db, fetch_sessions, topics
from kopilka.core.partitioning import DefaultPartitioner
from kopilka.core.produce_requests import fuller_requests
from kopilka.core.settings import Settings
from streams.changelog_barrier import wait_for_changelog
from streams.consumer import StreamConsumer
from streams.producer_buffer import ebbing
from streams.table_store import LedgerTable


class _Producer(faust_aiokafka.Producer):
    """Faust's producer, sending each broker all its due batches at once
    (kopilka.core.produce_requests), its buffer waited on cheaply (streams.producer_buffer)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ebbing(self.buffer)

    def _new_producer(self, transactional_id=None):
        return fuller_requests(super()._new_producer(transactional_id))


class App(faust.App):
    """faust.App with three repairs for faust-streaming 0.15, and fuller produce requests.

    Its consumer never skips a fetched record (streams.consumer). Its producer's flush, which
    Faust awaits before committing offsets, also waits for every table changelog write
    (streams.changelog_barrier): a commit never runs ahead of the state.

    While a rebalance or a table recovery seeks and suspends the flow, the fetcher can drop
    records it already fetched (its read offset and aiokafka's position move past them without
    a stream seeing them). The partition then sits idle and, with a gap in its acks, never
    commits again (seen on restarts that had a table to restore, and after kill -9). Once the
    rebalance has ended we stop the flow, seek every stream partition back to its committed
    offset (to the beginning when nothing was committed, as auto_offset_reset=earliest says)
    and resume: what was not committed is delivered again, which every stage here tolerates,
    being idempotent on derived ids.
    """

    def _new_transport(self):
        transport = super()._new_transport()
        transport.Consumer = StreamConsumer
        transport.Producer = _Producer
        return transport

    def _new_producer(self):
        """The producer whose flush (what Faust awaits before each commit) also waits for every
        table write to be on the broker: see streams.changelog_barrier; and which tracks the
        metadata of every topic the worker writes to (`_track_topics`)."""
        producer = super()._new_producer()
        flush = producer.flush
        start = producer.on_start

        async def flush_with_changelog() -> None:
            await flush()
            await wait_for_changelog()

        async def start_tracking_topics() -> None:
            await start()
            await _track_topics(producer._producer.client)

        producer.flush = flush_with_changelog
        producer.on_start = start_tracking_topics
        return producer

    async def maybe_start_producer(self):
        """The running producer, as Faust's, which every record sent asks for: Faust's goes
        through a stampede guard that yields to the event loop three times per call, i.e. per
        record the agents send (1.5 % of the worker's main thread, py-spy)."""
        producer = self.producer
        if producer.started and not self.in_transaction:
            return producer
        return await super().maybe_start_producer()

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        self._reseek_task = asyncio.ensure_future(self._seek_to_committed())

    async def _seek_to_committed(self) -> None:
        generation = self.consumer_generation_id
        consumer = self.consumer
        consumer.stop_flow()
        try:
            await consumer.wait_for_stopped_flow()
            if self.consumer_generation_id != generation or self.rebalancing:
                return
            await consumer.perform_seek()  # and the never-committed ones to their start
            self.log.info("Re-seeked stream partitions to committed offsets after rebalance")
        finally:
            if not self.rebalancing:
                consumer.resume_flow()


async def _track_topics(client) -> None:
    """Ask aiokafka to keep the metadata of every topic the worker writes to.

    aiokafka's client refreshes metadata only for the topics it tracks once any is tracked,
    and replaces what it knew with the answer; a send to a topic already in its first (full)
    metadata does not track it. On a fresh deployment Faust creates the table's changelog
    while the worker starts, which tracks that topic alone: the next refresh dropped every
    other topic, and a send to loyalty.events then waited for metadata that never came back
    (the first purchase after `make run` never reached Postgres)."""
    await asyncio.gather(*(client.add_topic(spec.name) for spec in topics.ALL))


class _StateBytes(codecs.Codec):
    """The ledger table's values: our own JSON, stored as it is. Faust's default json codec
    wrapped each value in a JSON string (escaping it whole, and every event string inside it
    once more) on every write and read; values written that way are still read."""

    def _dumps(self, obj) -> bytes:
        return obj if isinstance(obj, bytes) else str(obj).encode()

    def _loads(self, s: bytes) -> bytes:
        return orjson.loads(s).encode() if s[:1] == b'"' else s


codecs.register("kopilka-state", _StateBytes())


class Resources:
    """The Postgres pool, opened on first use by whichever agent needs it first."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    # the agents keep no session state (kopilka.core.db.create_pool)
                    self._pool = await db.create_pool(
                        self._database_url, min_size=1, max_size=8, stateless=True
                    )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


@dataclass(frozen=True)
class Topics:
    """The app's topics, raw bytes in and out (`StreamApp.raw_topic`)."""

    webhooks_raw: faust.TopicT
    webhooks_audit: faust.TopicT
    webhooks_dead: faust.TopicT
    webhooks_deferred: faust.TopicT
    commands: faust.TopicT
    events: faust.TopicT
    outcomes: faust.TopicT
    dead_letters: faust.TopicT
    notifications_telegram: faust.TopicT


@dataclass(frozen=True)
class StreamApp:
    """What `create_app` made: the Faust app and what its agents share."""

    settings: Settings
    app: App
    topics: Topics
    state_table: faust.TableT
    resources: Resources


def _durable(settings: Settings) -> dict[str, str]:
    """Durability of the topics Faust creates itself (ours are created by kopilka.core.kafka
    first, with the same settings): acks=all means min.insync.replicas disks, not one."""
    return {"min.insync.replicas": str(settings.min_insync_replicas)}


def _raw_topic(app: App, settings: Settings, spec: topics.TopicSpec) -> faust.TopicT:
    return app.topic(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
        replicas=settings.topic_replication_factor,
        config=_durable(settings),
    )


def create_app(settings: Settings, **overrides) -> StreamApp:
    """The worker's Faust app made from `settings` (`overrides`: Faust settings a test changes,
    e.g. store="memory://"), with its topics, the ledger table and the Postgres pool holder. No
    agent is on it yet: each agent module's `register` puts its own."""
    fetch_sessions.install(settings)
    app = App(
        settings.worker_id,
        **{**_app_settings(settings), **overrides},
    )
    raw = {
        name: _raw_topic(app, settings, spec)
        for name, spec in (
            ("webhooks_raw", topics.WEBHOOKS_RAW),
            ("webhooks_audit", topics.WEBHOOKS_AUDIT),
            ("webhooks_dead", topics.WEBHOOKS_DEAD),
            ("webhooks_deferred", topics.WEBHOOKS_DEFERRED),
            ("commands", topics.COMMANDS),
            ("events", topics.EVENTS),
            ("outcomes", topics.OUTCOMES),
            ("dead_letters", topics.DEAD_LETTERS),
            ("notifications_telegram", topics.NOTIFICATIONS_TELEGRAM),
        )
    }
    resources = Resources(settings.database_url.get_secret_value())

    @app.on_before_shutdown.connect
    async def _close_resources(sender, **kwargs) -> None:
        await resources.close()

    return StreamApp(settings, app, Topics(**raw), _state_table(app, settings), resources)


def _app_settings(settings: Settings) -> dict:
    return dict(
        broker=[f"kafka://{server}" for server in settings.bootstrap_list],
        store=settings.worker_store,
        datadir=str(settings.worker_data_dir or Path(".data") / "worker" / settings.worker_id),
        # A table entry never outgrows a produce request (customer state is bounded: rules.py).
        producer_max_request_size=settings.max_record_bytes + 64 * 1024,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # No linger: a lone record goes at once (it waited 5 ms on each hop of a `Prefer: wait`
        # round trip). Under load the records still go in batches: one request is in flight per
        # broker, and what is sent meanwhile goes together in the next (kopilka.core
        # .produce_requests). Side by side with 5 ms, the worker's CPU per purchase was the same.
        producer_linger=0.0,
        # Kafka's own partitioner, bit for bit, with the murmur2 of recent keys remembered:
        # aiokafka's pure-Python murmur2 ran for every keyed record the worker sends
        producer_partitioner=DefaultPartitioner(),
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        # A killed worker's partitions move to a live one after this long, not the default 60 s.
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.worker_session_timeout_s / 3),
        web_enabled=False,
        # commits wait for the table's changelog writes; its store writes no RocksDB log
        Table=LedgerTable,
        # Finish the in-flight event before a rebalance or shutdown (Faust's default).
        stream_wait_empty=True,
    )


def _state_table(app: App, settings: Settings) -> faust.TableT:
    """The ledger's state, co-partitioned with commands (key tenant:customer), in ONE table so
    that its writes share one changelog partition, in order: "c|tenant:customer" -> CustomerState
    JSON and "o|tenant:customer|order" -> OrderState JSON (Faust writes a table entry to the
    partition of the event being processed). After a crash the changelog holds a prefix of the
    writes, so writing the customer entry before the order entry leaves nothing a replay cannot
    repair. str keys (JSON-encoded by Faust); values are our own JSON as raw bytes
    (`_StateBytes`)."""
    table = app.Table(
        topics.LEDGER_TABLE,  # its changelog: topics.ledger_changelog, made by kopilka.core.kafka
        key_type=str,
        value_type=bytes,
        partitions=settings.topic_partitions,
        store_cache_mb=settings.worker_store_cache_mb,
        # compacted (Faust's default for a table's changelog); as durable as the rest, and able
        # to take the largest entry the producer may send
        extra_topic_configs={
            **_durable(settings),
            "max.message.bytes": str(settings.max_record_bytes + 64 * 1024),
        },
    )
    table.value_serializer = "kopilka-state"  # Faust derives it from the type otherwise
    return table
