from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from sinks.retry_schedule import MAX_RETRY_AFTER_S, RetrySchedule, parse_retry_after

SVIX = [0, 5, 300, 1800, 7200, 18000, 36000, 36000]


def test_delays_follow_the_schedule_within_the_jitter_then_stop():
    schedule = RetrySchedule(SVIX, jitter=0.2, rng=random.Random(1))
    assert schedule.next_delay(0) == 0
    for made, base in enumerate(SVIX[1:], start=1):
        delay = schedule.next_delay(made)
        assert base * 0.8 <= delay <= base * 1.2
    assert schedule.next_delay(len(SVIX)) is None


def test_jitter_spreads_retries():
    schedule = RetrySchedule(SVIX, jitter=0.2)
    assert len({schedule.next_delay(2) for _ in range(20)}) > 1


def test_retry_after_replaces_the_schedule_but_not_its_length():
    schedule = RetrySchedule([0, 0.3, 0.3])
    assert schedule.next_delay(1, retry_after=7) == 7
    assert schedule.next_delay(1, retry_after=10**9) == MAX_RETRY_AFTER_S
    assert schedule.next_delay(3, retry_after=7) is None


def test_retry_after_header_forms():
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Thu, 26 Nov 2026 12:00:30 GMT", now) == 30
    assert parse_retry_after("Thu, 26 Nov 2026 11:00:00 GMT", now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_schedule_needs_sane_delays():
    with pytest.raises(ValueError):
        RetrySchedule([])
    with pytest.raises(ValueError):
        RetrySchedule([0, -1])
