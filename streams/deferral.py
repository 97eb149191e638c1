"""Refunds that overtook their purchase go round `webhooks.deferred` until their order is claimed.

A refund travels on its order's partition, its purchase on its customer's (schemas.routing), so
a refund can be normalised before its purchase is. It is then neither refused nor waited for:
its raw envelope is sent to `webhooks.deferred` (same key) with `deferred_until` (received +
`refund_order_wait_s`) and `not_before` (a moment later), and its own offset goes on as usual.
The deferred agent reads it back no sooner than `not_before` and normalises it again: applied
once its order is claimed, sent round again while there is time, refused as an unknown order
after `deferred_until`, and only once every raw record stored before it has been normalised
(streams.raw_progress: its purchase may still be in a backlog); until then it goes round again.
That backlog is measured from when this deployment's webhooks.raw stored the refund
(`stored_at`), not from when the shop sent it: a replay into a new deployment keeps
`received_at` from the old one.

Nothing is held in memory: a record is either in a topic or applied, so a kill -9 at any point
loses no refund (its offset is committed only after the copy sent round is on the broker). An
earlier design kept such refunds unacknowledged in the worker; around rebalances some were let
go and never came back (the fault suite's kill -9 scenario: refunds missing from the ledger).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from schemas.messages import RawEnvelope

RETRY_EVERY = timedelta(seconds=1)
LONGEST_NAP_S = 2.0  # a not_before further off than this (a clock jump) is not slept on


def raw_stored_at(env: RawEnvelope, record_timestamp_s: float | None) -> datetime:
    """When this deployment's webhooks.raw stored the record: the moment the backlog it waits
    for is measured from (streams.raw_progress). Not `received_at`, which a replay into a new
    deployment keeps from the old one (the wait would end at once). A record sent round keeps
    its first round's; one an older worker sent round has none and is measured as that worker
    did, from `received_at` (its own timestamp on webhooks.deferred moves every round).
    `record_timestamp_s`: the Kafka record's timestamp, in seconds (Faust's message.timestamp)."""
    if env.stored_at is not None:
        return env.stored_at
    if env.deferred_until is not None or not record_timestamp_s:
        return env.received_at
    return datetime.fromtimestamp(record_timestamp_s, UTC)


def first_deferral(
    env: RawEnvelope, wait_s: float, now: datetime, stored_at: datetime | None = None
) -> RawEnvelope:
    """The envelope to send round the first time; `stored_at` is when webhooks.raw stored it,
    which streams.raw_progress measures the backlog from on every later round."""
    return env.model_copy(
        update={
            "deferred_until": now + timedelta(seconds=wait_s),
            "not_before": now + RETRY_EVERY,
            "stored_at": stored_at,
        }
    )


def deferral(
    env: RawEnvelope, wait_s: float, now: datetime, stored_at: datetime | None = None
) -> RawEnvelope | None:
    """The envelope to send round again, or None when its time is up (refuse it now)."""
    if env.deferred_until is None:
        return first_deferral(env, wait_s, now, stored_at)
    if now >= env.deferred_until:
        return None
    return env.model_copy(update={"not_before": now + RETRY_EVERY})


def once_more(env: RawEnvelope, now: datetime) -> RawEnvelope:
    """Round again past `deferred_until`: the purchase may still be in the raw backlog."""
    return env.model_copy(update={"not_before": now + RETRY_EVERY})


async def nap_until(not_before: datetime | None) -> None:
    """Sleep until the envelope may be tried again (never more than LONGEST_NAP_S)."""
    if not_before is None:
        return
    delay = (not_before - datetime.now(UTC)).total_seconds()
    if delay > 0:
        await asyncio.sleep(min(delay, LONGEST_NAP_S))
