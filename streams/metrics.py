"""Prometheus metrics of the stream worker, gathered without touching the agents.

A Faust sensor (`WorkerSensor`, put on the app by `register`) counts what every agent takes
in and acknowledges, how long each record took and how old it was by then, what the worker sends
to each topic, commits and table operations. A timer samples the consumer lag of every assigned
topic-partition (highwater minus the next offset to process) and the size of each table
partition. The ledger's own per-type counter (`streams.ledger.applied`) is read at scrape time.
Dead letters and retries are counted where they happen (`streams.dead_letters.send`,
`kopilka.core.retry.until_done`).

Labels are agents, topics, partitions, tables, command types, stages and codes: bounded by the
code and the partition count, never by tenants or customers. `settings.worker_metrics_port`
(unset or 0: off) is where the worker serves them, from its start. The figures themselves are
process-wide (Prometheus' default registry, filled at import); `register(stream_app)` adds the
sensor, the sampler and the endpoint to an app (streams.app).
"""

from __future__ import annotations

import sys
import time
from bisect import bisect_left
from typing import Any

from faust.sensors import Sensor
from prometheus_client import Counter, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from prometheus_client.utils import floatToGoString

from kopilka.core.logging import get_logger
from streams.app import StreamApp

log = get_logger(__name__)

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class HookFigures(Collector):
    """What the sensor's hooks count, as plain numbers, made into Prometheus families only when
    scraped. The hooks run several times per record (a purchase makes about 25 calls), and a
    prometheus_client metric takes a lock per increment: ~70 us of CPU per purchase, measured,
    against ~20 us with dictionary increments. Same names, labels and buckets as before."""

    def __init__(self) -> None:
        self.counters: dict[str, tuple[str, tuple[str, ...], dict[tuple, float]]] = {}
        self.gauges: dict[str, tuple[str, tuple[str, ...], dict[tuple, float]]] = {}
        self.histograms: dict[str, tuple[str, tuple[str, ...], dict[tuple, list]]] = {}

    def counter(self, name: str, doc: str, labels: tuple[str, ...]) -> dict[tuple, float]:
        """The counts of `name` (ending in _total), by label values: add to them."""
        self.counters[name] = (doc, labels, {})
        return self.counters[name][2]

    def gauge(self, name: str, doc: str, labels: tuple[str, ...]) -> str:
        """A sampled figure (`name`): each sample replaces all its values (`sampled`)."""
        self.gauges[name] = (doc, labels, {})
        return name

    def sampled(self, name: str, values: dict[tuple, float]) -> None:
        doc, labels, _ = self.gauges[name]
        self.gauges[name] = (doc, labels, values)

    def histogram(self, name: str, doc: str, labels: tuple[str, ...]) -> dict[tuple, list]:
        """The observations of `name`, by label values: pass them to `observe`."""
        self.histograms[name] = (doc, labels, {})
        return self.histograms[name][2]

    def collect(self):
        for name, (doc, labels, counts) in self.counters.items():
            family = CounterMetricFamily(name, doc, labels=labels)
            for values, n in dict(counts).items():
                family.add_metric(values, n)
            yield family
        for name, (doc, labels, sample) in list(self.gauges.items()):
            family = GaugeMetricFamily(name, doc, labels=labels)
            for values, n in sample.items():
                family.add_metric(values, n)
            yield family
        for name, (doc, labels, series) in self.histograms.items():
            family = HistogramMetricFamily(name, doc, labels=labels)
            for values, held in dict(series).items():
                held = list(held)
                buckets, seen = [], 0
                for bound, n in zip((*_SECONDS, float("inf")), held[1:], strict=True):
                    seen += n
                    buckets.append((floatToGoString(bound), seen))
                family.add_metric(values, buckets, held[0])
            yield family


def observe(series: dict[tuple, list], labels: tuple, value: float) -> None:
    """One observation into a histogram of HookFigures: [sum, count per bucket ...]."""
    held = series.get(labels)
    if held is None:
        held = series[labels] = [0.0] + [0] * (len(_SECONDS) + 1)
    held[0] += value
    held[1 + bisect_left(_SECONDS, value)] += 1


FIGURES = HookFigures()
RECORDS_IN = FIGURES.counter(
    "kopilka_agent_records_in_total", "Records an agent's stream took in", ("agent",)
)
RECORDS_OUT = FIGURES.counter(
    "kopilka_agent_records_out_total", "Records an agent finished (acknowledged)", ("agent",)
)
PROCESSING = FIGURES.histogram(
    "kopilka_agent_processing_seconds",
    "From a record entering an agent's stream to its acknowledgement (batches included)",
    ("agent",),
)
RECORD_AGE = FIGURES.histogram(
    "kopilka_agent_record_age_seconds",
    "From a record's Kafka timestamp (when it was written) to its acknowledgement by an agent",
    ("agent",),
)
MESSAGES_IN = FIGURES.counter(
    "kopilka_worker_messages_in_total", "Records the consumer delivered, by topic", ("topic",)
)
SENT = FIGURES.counter(
    "kopilka_worker_records_sent_total", "Records produced, by topic", ("topic",)
)
SEND_ERRORS = FIGURES.counter(
    "kopilka_worker_send_errors_total", "Records the broker did not take, by topic", ("topic",)
)
TABLE_OPS = FIGURES.counter(
    "kopilka_table_operations_total", "Table reads and writes", ("table", "op")
)
COMMITS = Counter("kopilka_worker_commits_total", "Offset commits completed")
# Sampled every few seconds (`sample`) for ~250 partitions: made into families when scraped, as
# the counters are; prometheus_client's Gauge children, cleared and re-made per sample, were 2 %
# of the worker's CPU under load.
LAG = FIGURES.gauge(
    "kopilka_consumer_lag",
    "Records in an assigned partition not yet processed (highwater - next offset to process)",
    ("topic", "partition"),
)
TABLE_KEYS = FIGURES.gauge(
    "kopilka_table_keys",
    "Keys in a table partition this worker holds (estimate)",
    ("table", "partition"),
)
TABLE_BYTES = FIGURES.gauge(
    "kopilka_table_bytes",
    "Live data of a table partition this worker holds on disk (estimate; 0 in memory)",
    ("table", "partition"),
)
STORE_MEMORY = FIGURES.gauge(
    "kopilka_table_store_memory_bytes",
    "Memory of this worker's RocksDB tables: their memtables (summed over partitions) and the"
    " block cache they share",
    ("table", "kind"),
)
DEAD_LETTERS = Counter(
    "kopilka_dead_letters_total", "Dead letters sent, by stage and code", ["stage", "code"]
)


def agent_name(stream) -> str:
    """The agent a stream belongs to ("ledger"), from the prefix Faust gives its stream."""
    prefix = getattr(stream, "prefix", "") or ""
    return prefix.rsplit(".", 1)[-1] or "unknown"


class WorkerSensor(Sensor):
    """Faust's sensor hooks -> Prometheus (through FIGURES). Each hook is a dictionary look-up
    and an increment."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._agents: dict[int, tuple[str]] = {}  # id(stream) -> (agent name,)
        self.next_offset: dict = {}  # TP -> the offset after the last one an agent finished

    def _agent(self, stream) -> tuple[str]:
        labels = self._agents.get(id(stream))
        if labels is None:
            labels = self._agents[id(stream)] = (agent_name(stream),)
        return labels

    def on_message_in(self, tp, offset, message) -> None:
        key = (tp.topic,)
        MESSAGES_IN[key] = MESSAGES_IN.get(key, 0) + 1

    def on_stream_event_in(self, tp, offset, stream, event):
        key = self._agent(stream)
        RECORDS_IN[key] = RECORDS_IN.get(key, 0) + 1
        return {"time_in": time.monotonic()}

    def on_stream_event_out(self, tp, offset, stream, event, state=None) -> None:
        key = self._agent(stream)
        RECORDS_OUT[key] = RECORDS_OUT.get(key, 0) + 1
        if offset is not None and offset + 1 > self.next_offset.get(tp, 0):
            self.next_offset[tp] = offset + 1
        if state and state.get("time_in") is not None:
            observe(PROCESSING, key, time.monotonic() - state["time_in"])
        written = getattr(getattr(event, "message", None), "timestamp", None)
        if written:
            observe(RECORD_AGE, key, max(0.0, time.time() - written))

    def on_commit_completed(self, consumer, state) -> None:
        COMMITS.inc()

    def on_send_initiated(self, producer, topic, message, keysize, valsize):
        return {"topic": topic}

    def on_send_completed(self, producer, state, metadata) -> None:
        key = (getattr(metadata, "topic", None) or _topic(state),)
        SENT[key] = SENT.get(key, 0) + 1

    def on_send_error(self, producer, exc, state) -> None:
        key = (_topic(state),)
        SEND_ERRORS[key] = SEND_ERRORS.get(key, 0) + 1

    def on_table_get(self, table, key) -> None:
        count_table_op(table.name, "get")

    def on_table_set(self, table, key, value) -> None:
        count_table_op(table.name, "set")

    def on_table_del(self, table, key) -> None:
        count_table_op(table.name, "del")


def count_table_op(table: str, op: str) -> None:
    """One table read ("get"), write ("set") or delete ("del") more (streams.table_reads too)."""
    key = (table, op)
    TABLE_OPS[key] = TABLE_OPS.get(key, 0) + 1


def _topic(state) -> str:
    return (state or {}).get("topic") or "unknown"


class LedgerApplied(Collector):
    """`streams.ledger.applied` (commands applied by type), read when Prometheus scrapes."""

    def collect(self):
        family = CounterMetricFamily(
            "kopilka_ledger_commands_applied",
            "Commands the ledger applied, by type",
            labels=["type"],
        )
        ledger = sys.modules.get("streams.ledger")
        counts: dict = {}
        for _ in range(3):  # the agent may add a new type while we copy: try again
            try:
                counts = dict(getattr(ledger, "applied", None) or {})
                break
            except RuntimeError:
                continue
        for kind, n in sorted(counts.items()):
            family.add_metric([kind], n)
        yield family


def _rocks_dbs(table) -> dict | None:
    """{partition: RocksDB} of a table this worker holds on disk; None for one in memory."""
    return getattr(table.data, "_dbs", None)


def _table_partitions(table):
    """(partition, keys, bytes) of each table partition this worker holds, cheaply."""
    dbs = _rocks_dbs(table)
    if dbs is not None:  # RocksDB: its own estimates, no scan
        for partition, db in list(dbs.items()):
            yield (
                partition,
                _rocks_int(db, "rocksdb.estimate-num-keys"),
                _rocks_int(db, "rocksdb.estimate-live-data-size"),
            )
        return
    data = getattr(table.data, "data", None)
    if data is not None:  # memory: only the total is known cheaply
        yield "all", len(data), 0


def _store_memory(table) -> dict[str, int]:
    """{"memtables": bytes, "block_cache": bytes} of a RocksDB table; {} in memory. The
    partitions share one block cache (streams.table_store): any one of them reports it."""
    dbs = list((_rocks_dbs(table) or {}).values())
    if not dbs:
        return {}
    return {
        "memtables": sum(_rocks_int(db, "rocksdb.cur-size-all-mem-tables") for db in dbs),
        "block_cache": _rocks_int(dbs[0], "rocksdb.block-cache-usage"),
    }


def _rocks_int(db, name: str) -> int:
    try:
        if hasattr(db, "property_int_value"):  # rocksdict
            return int(db.property_int_value(name) or 0)
        return int(db.get_property(name.encode()) or 0)  # python-rocksdb
    except Exception:
        return 0


async def sample(app: Any) -> None:
    """Consumer lag per assigned partition and table sizes: replaces the previous sample.

    Lag is the partition's highwater minus the next offset to process (the last one an agent
    finished + 1, else the committed one). Only figures already in memory are read: nothing here
    queues work on the consumer's thread, which the fetcher needs."""
    lags: dict[tuple[str, str], int] = {}
    consumer = app.consumer
    try:
        assigned = consumer.assignment()
    except Exception as exc:  # not started, or between generations
        log.debug("lag_not_sampled", error=repr(exc))
        assigned = set()
    committed = getattr(consumer, "_committed_offset", {})
    for tp in assigned:
        try:
            highwater = consumer.highwater(tp)
        except Exception as exc:  # rebalancing, or not fetched yet: no figure this time
            log.debug("lag_not_sampled", topic=tp.topic, partition=tp.partition, error=repr(exc))
            continue
        if highwater is None:
            continue
        position = max(SENSOR.next_offset.get(tp, 0), committed.get(tp) or 0)
        lags[(tp.topic, str(tp.partition))] = max(0, highwater - position)
    tables, memory = [], {}
    for table in app.tables.values():
        try:
            tables.extend((table.name, str(p), k, b) for p, k, b in _table_partitions(table))
            for kind, size in _store_memory(table).items():
                memory[(table.name, kind)] = size
        except Exception as exc:  # a store closing during a rebalance
            log.debug("table_not_sampled", table=table.name, error=repr(exc))
            continue
    # each replaces the last sample whole: partitions that moved to another worker are gone
    FIGURES.sampled(LAG, lags)
    FIGURES.sampled(TABLE_KEYS, {(name, p): keys for name, p, keys, _ in tables})
    FIGURES.sampled(TABLE_BYTES, {(name, p): size for name, p, _, size in tables})
    FIGURES.sampled(STORE_MEMORY, memory)


def serve(port: int | None, host: str) -> bool:
    """Start the /metrics server on `port`; False (and nothing started) when it is unset or 0."""
    if not port:
        return False
    start_http_server(port, addr=host)
    log.info("metrics_serving", port=port, host=host)
    return True


REGISTRY.register(FIGURES)
REGISTRY.register(LedgerApplied())
SENSOR = WorkerSensor()
_sa: StreamApp  # bound by `register`


def register(stream_app: StreamApp) -> None:
    """The sensor on the app, the /metrics endpoint from its start, and the sampler."""
    global _sa
    _sa = stream_app
    stream_app.app.sensors.add(SENSOR)
    stream_app.app.task(_serve_metrics)
    stream_app.app.timer(interval=stream_app.settings.metrics_sample_interval_s)(_sample_metrics)


async def _serve_metrics() -> None:
    serve(_sa.settings.worker_metrics_port, _sa.settings.metrics_host)


async def _sample_metrics() -> None:
    await sample(_sa.app)
