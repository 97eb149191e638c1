"""The read model's agents: `loyalty.events` -> the ledger sink, `webhooks.audit` and
`webhooks.dead` -> the audit sink (both in sinks/postgres.py, plain classes of `sinks.base.Sink`).

Each agent feeds its sink in batches and retries a flush that failed for a transient reason
until the database is back: offsets are acknowledged only after the flush (or the dead letter),
and every write is idempotent on event_id, so a crash or a replay writes nothing twice.
`register(stream_app)` puts both agents on an app (streams.app).
"""

from __future__ import annotations

from faust.types import EventT

from kopilka.core.logging import get_logger
from sinks.base import Sink
from sinks.postgres import AuditSink, ReadModelSink
from streams.acks import held
from streams.app import StreamApp
from streams.dead_letters import of_event
from streams.dead_letters import send as send_dead_letter
from streams.sink_batches import write_batch

log = get_logger(__name__)

_sa: StreamApp  # bound by `register`


def register(stream_app: StreamApp) -> None:
    """`read_model_sink` on loyalty.events; `audit_sink` on webhooks.audit and webhooks.dead."""
    global _sa
    _sa = stream_app
    app, topics = stream_app.app, stream_app.topics
    audit_topics = app.topic(
        topics.webhooks_audit.get_topic_name(),
        topics.webhooks_dead.get_topic_name(),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.agent(topics.events)(read_model_sink)
    app.agent(audit_topics)(audit_sink)


async def _drain(stream, sink: Sink) -> None:
    """Batches into the sink. A flush failing for a transient reason is retried until it
    succeeds (the batch is not acknowledged before); one failing for a permanent reason is
    split, record by record, and the records the database still refuses are dead-lettered
    whole, so nothing is acknowledged that was neither written nor dead-lettered."""
    name = type(sink).__name__
    try:
        async for batch in stream.take_events(
            _sa.settings.sink_batch_size, within=_sa.settings.sink_batch_within_s
        ):
            with held(batch):
                await _write(sink, name, batch)
    finally:
        await sink.close()


async def _write(sink: Sink, name: str, batch: list[EventT]) -> None:
    readable = []
    for event in batch:
        try:
            sink.add(event.value)
            readable.append(event)
        except Exception as exc:  # not ours to crash on, not ours to drop: dead-letter it
            await _dead(event, name, "unreadable_record", exc)

    async def refused(event: EventT, exc: Exception) -> None:
        await _dead(event, name, "refused_by_database", exc)

    await write_batch(sink, f"{name}.flush", readable, refused)


async def _dead(event: EventT, sink: str, code: str, exc: Exception) -> None:
    reason = f"{sink} could not write this record"
    await send_dead_letter(of_event(event, "sink.postgres", code, reason, error=exc))


async def read_model_sink(stream):
    await _drain(stream, ReadModelSink(_sa.resources.pool))


async def audit_sink(stream):
    await _drain(stream, AuditSink(_sa.resources.pool))
