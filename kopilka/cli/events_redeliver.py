"""`kopilka replay events --to-endpoint ID --from T [--to T]`: a period's events, to a shop's
webhook endpoint again (what Svix calls recover).

The period's events of the endpoint's shop (the record key starts with its tenant id) and of
the types the endpoint subscribed to (`kopilka.directory.subscriptions.wants`) are read from
loyalty.events and put back into the outbox the worker's fan-out fills (streams/outbound.py):
the same row id (derived from endpoint and event), the same payload bytes. The dispatcher then
sends them with its own signing, pacing, retries and dead-lettering; the `webhook-id` it signs
is the event id, as in the first delivery, so a shop that de-duplicates recognises them.

A delivery already in the outbox goes back to pending with a fresh round of retries (its
attempt history stays); one that is pending now is left alone (it is going out anyway); one
never made (the endpoint did not exist yet) is created. A disabled or removed endpoint is
refused: enable it first (`kopilka outbound endpoints enable`).

Stop and resume: the next offset of every partition is saved after every batch put in the
outbox (endpoint-<digest>.json in KOPILKA_REPLAY_STATE_DIR); the same command goes on from there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import orjson

from kopilka.cli.events_replay import (
    Span,
    events_consumer,
    load_state,
    read_span,
    save_state,
    span_offsets,
)
from kopilka.cli.progress import Reporter
from kopilka.core.ids import derived_id
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings
from kopilka.directory.subscriptions import WAKE_CHANNEL, wants

log = get_logger(__name__)

# The fan-out's insert, except that a finished delivery (succeeded or dead) is due again.
_REQUEUE = """
WITH r AS (
    INSERT INTO webhook_deliveries AS d (id, endpoint_id, tenant_id, event_id, event_type, payload)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[])
    ON CONFLICT (endpoint_id, event_id) DO UPDATE
       SET status = 'pending', round_attempts = 0, next_attempt_at = now(), dead_reason = NULL,
           finished_at = NULL, lease_token = NULL
     WHERE d.status <> 'pending'
    RETURNING (xmax = 0) AS created
)
SELECT count(*) FILTER (WHERE created) AS created, count(*) FILTER (WHERE NOT created) AS reset
  FROM r
"""


@dataclass
class Redelivery:
    endpoint_id: str
    span: Span
    batch: int = 5000
    counts: dict[str, int] = field(
        default_factory=lambda: {
            "read": 0,
            "matched": 0,
            "created": 0,
            "requeued": 0,
            "already_pending": 0,
        }
    )


class EndpointRefused(ValueError):
    """No such endpoint, or not one to deliver to now; the message says which."""


async def _endpoint(conn: asyncpg.Connection, endpoint_id: str) -> asyncpg.Record:
    try:
        eid = uuid.UUID(endpoint_id)
    except ValueError:
        raise EndpointRefused(f"endpoint id {endpoint_id!r} is not a UUID") from None
    row = await conn.fetchrow(
        "SELECT id, tenant_id, event_types, enabled, removed_at FROM webhook_endpoints"
        " WHERE id = $1",
        eid,
    )
    if row is None:
        raise EndpointRefused(f"no webhook endpoint {endpoint_id}")
    if row["removed_at"] is not None or not row["enabled"]:
        raise EndpointRefused(f"endpoint {endpoint_id} is disabled or removed: enable it first")
    return row


def plan(endpoint: asyncpg.Record, records) -> list[tuple]:
    """Outbox rows for the records this endpoint wants (its shop, its event types)."""
    prefix = f"{endpoint['tenant_id']}:".encode()
    types = list(endpoint["event_types"])
    rows = []
    for record in records:
        if not (record.key or b"").startswith(prefix):
            continue
        try:
            event = orjson.loads(record.value)
            kind, event_id = str(event["type"]), uuid.UUID(str(event["event_id"]))
            payload = record.value.decode()
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("redeliver_event_unreadable", partition=record.partition)
            continue
        if wants(types, kind):
            row_id = uuid.UUID(derived_id("webhook", endpoint["id"], event_id))  # as the fan-out
            rows.append((row_id, endpoint["id"], endpoint["tenant_id"], event_id, kind, payload))
    return rows


async def redeliver(job: Redelivery, settings: Settings, state_dir: Path) -> dict:
    state_path = state_dir / f"endpoint-{job.span.digest(job.endpoint_id)}.json"
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    consumer = events_consumer(settings)
    try:
        endpoint = await _endpoint(conn, job.endpoint_id)
        await consumer.start()
        _, start, end = await span_offsets(consumer, job.span, load_state(state_path))
        reporter = Reporter("replay events", sum(max(0, end[tp] - start[tp]) for tp in start))
        async for records, position in read_span(consumer, start, end, job.span.until, job.batch):
            job.counts["read"] += len(records)
            rows = plan(endpoint, records)
            if rows:
                job.counts["matched"] += len(rows)
                async with conn.transaction():
                    done = await conn.fetchrow(_REQUEUE, *zip(*rows, strict=True))
                    await conn.execute(f"NOTIFY {WAKE_CHANNEL}")
                job.counts["created"] += done["created"]
                job.counts["requeued"] += done["reset"]
                job.counts["already_pending"] += len(rows) - done["created"] - done["reset"]
            save_state(state_path, {str(p): o for p, o in position.items()})
            reporter.advance(len(records))
        reporter.close(
            f"{job.counts['read']:,} events read, {job.counts['matched']:,} for endpoint"
            f" {job.endpoint_id}: {job.counts['requeued']:,} due again,"
            f" {job.counts['created']:,} new, {job.counts['already_pending']:,} already pending"
        )
        state_path.unlink(missing_ok=True)
        log.info("redeliver_done", endpoint_id=job.endpoint_id, **job.counts)
        return dict(job.counts)
    finally:
        await consumer.stop()
        await conn.close()
