"""A refund before its purchase goes round webhooks.deferred until its time is up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.messages import RawEnvelope
from streams.deferral import RETRY_EVERY, deferral, once_more, raw_stored_at

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _refund() -> RawEnvelope:
    return RawEnvelope.wrap(
        b'{"action":"refund","payload":{"orderId":"O-1","amount":"5"}}',
        event_id="e-1",
        tenant_id="t-1",
        received_at=T0,
        content_type="application/json",
    )


def test_first_time_round_it_gets_its_deadline_and_a_moment_before_the_next_try():
    first = deferral(_refund(), 30, T0)
    assert first.deferred_until == T0 + timedelta(seconds=30)
    assert first.not_before == T0 + RETRY_EVERY
    assert first.event_id == "e-1" and first.raw_body() == _refund().raw_body()
    # and it reads back from the topic as it was sent
    assert RawEnvelope.from_bytes(first.to_bytes()) == first


def test_it_keeps_its_deadline_round_after_round_and_is_refused_after_it():
    first = deferral(_refund(), 30, T0)
    later = T0 + timedelta(seconds=12)
    again = deferral(first, 30, later)
    assert again.deferred_until == first.deferred_until
    assert again.not_before == later + RETRY_EVERY
    assert deferral(again, 30, T0 + timedelta(seconds=30)) is None


def test_past_its_deadline_it_goes_round_again_keeping_the_deadline():
    expired = deferral(_refund(), 30, T0)
    late = T0 + timedelta(seconds=90)
    again = once_more(expired, late)
    assert again.deferred_until == expired.deferred_until and again.not_before == late + RETRY_EVERY


def test_it_keeps_when_this_deployments_raw_topic_stored_it_round_after_round():
    # a replay into a new deployment keeps received_at from the old one: the backlog a refund
    # waits for is measured from when this deployment stored it (streams.raw_progress)
    stored = T0 + timedelta(days=40)
    first = deferral(_refund(), 30, stored, stored)
    assert first.stored_at == stored and first.received_at == T0
    again = deferral(RawEnvelope.from_bytes(first.to_bytes()), 30, stored + timedelta(seconds=3))
    assert again.stored_at == stored
    assert once_more(again, stored + timedelta(seconds=90)).stored_at == stored


def test_the_moment_is_when_this_deployment_stored_it_and_a_round_keeps_it():
    stored = T0 + timedelta(days=40)  # a replay, 40 days after the shop sent it
    assert raw_stored_at(_refund(), stored.timestamp()) == stored
    first = deferral(_refund(), 30, stored, stored)
    # its own timestamp on webhooks.deferred is later: the first round's moment is kept
    assert raw_stored_at(first, (stored + timedelta(seconds=5)).timestamp()) == stored


def test_an_older_workers_round_is_measured_from_received_at_as_it_was():
    older = _refund().model_copy(update={"deferred_until": T0 + timedelta(seconds=30)})
    assert raw_stored_at(older, (T0 + timedelta(seconds=7)).timestamp()) == T0
    assert raw_stored_at(_refund(), None) == T0  # no record timestamp: the ingress's time
