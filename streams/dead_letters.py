"""Dead letters out of the stream: what a stage gives up on goes to `kopilka.dead-letters`.

`send` is what every agent calls instead of dropping a record; it returns once the broker has
the dead letter, so the agent may acknowledge the original afterwards. The agent
`dead_letter_store` keeps every dead letter in Postgres (sinks.dead_letters.DeadLetterSink), where
`kopilka dead-letters` and the admin API list, show and redrive them. `register(stream_app)`
puts the agent on an app (streams.app) and binds the topic `send` writes to.
"""

from __future__ import annotations

from faust.types import EventT

from kopilka.core.logging import get_logger
from schemas.dead_letters import DeadLetter, Stage
from schemas.routing import tenant_of
from sinks.dead_letters import DeadLetterSink
from streams.acks import held
from streams.app import StreamApp
from streams.metrics import DEAD_LETTERS
from streams.sink_batches import write_batch

log = get_logger(__name__)

_sa: StreamApp  # bound by `register`


def register(stream_app: StreamApp) -> None:
    global _sa
    _sa = stream_app
    stream_app.app.agent(stream_app.topics.dead_letters)(dead_letter_store)


def of_event(
    event: EventT,
    stage: Stage,
    code: str,
    reason: str,
    part: tuple[int, bytes | None, bytes] | None = None,
    **fields,
) -> DeadLetter:
    """The dead letter of a record an agent got from Faust: where it came from, and itself; or,
    with `part` (its index, key and value), of the one part of it that failed (a command of a
    batch record), which a redrive then sends as a record of its own."""
    msg = event.message
    item, key, value = (None, event.key, event.value) if part is None else part
    fields.setdefault("tenant_id", tenant_of(key) or None)
    return DeadLetter.of(
        stage=stage,
        source_topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=key,
        value=value,
        code=code,
        reason=reason,
        item=item,
        **fields,
    )


async def send(dl: DeadLetter) -> None:
    log.warning(
        "dead_letter",
        stage=dl.stage,
        code=dl.code,
        tenant_id=dl.tenant_id,
        request_id=dl.request_id,
        source_topic=dl.source_topic,
        partition=dl.partition,
        offset=dl.offset,
        attempts=dl.attempts,
    )
    fut = await _sa.topics.dead_letters.send(key=(dl.tenant_id or "").encode(), value=dl.to_bytes())
    await fut
    DEAD_LETTERS.labels(dl.stage, dl.code).inc()


async def dead_letter_store(stream):
    """`kopilka.dead-letters` -> Postgres (sinks.dead_letters), in batches; a batch is
    acknowledged once stored, and a database that is away is waited for."""
    sink = DeadLetterSink(_sa.resources.pool)
    try:
        async for batch in stream.take_events(
            _sa.settings.sink_batch_size, within=_sa.settings.sink_batch_within_s
        ):
            with held(batch):  # acknowledged once stored: a stop mid-retry keeps them unread
                readable = []
                for event in batch:
                    try:
                        sink.add(event.value)
                        readable.append(event)
                    except ValueError as exc:  # not written by `send`: nothing to store, say where
                        log.error(
                            "dead_letter_unreadable",
                            partition=event.message.partition,
                            offset=event.message.offset,
                            error=str(exc)[:300],
                        )
                if readable:
                    await write_batch(sink, "dead_letters.add", readable, _not_stored)
    finally:
        await sink.close()


async def _not_stored(event: EventT, exc: Exception) -> None:
    """A letter Postgres refuses even alone: it stays on the topic; the log says which."""
    dl = DeadLetter.from_bytes(event.value)
    log.error(
        "dead_letter_not_stored",
        dead_letter_id=dl.dead_letter_id,
        stage=dl.stage,
        source_topic=dl.source_topic,
        partition=dl.partition,
        offset=dl.offset,
        error=type(exc).__name__,
        detail=str(exc)[:300],
    )
