"""The backoff schedule: capped, jittered in its upper half, and giving way to Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kopilka_client import RetryPolicy
from kopilka_client.retry import parse_retry_after


def test_the_schedule_doubles_up_to_the_cap():
    top = RetryPolicy(max_attempts=10, base_delay_s=0.5, max_delay_s=10, jitter=lambda: 1.0)
    assert [top.backoff(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    bottom = RetryPolicy(max_attempts=10, base_delay_s=0.5, max_delay_s=10, jitter=lambda: 0.0)
    assert [bottom.backoff(n) for n in range(7)] == [0.25, 0.5, 1, 2, 4, 5, 5]


def test_retry_after_is_waited_exactly_instead_of_the_backoff():
    policy = RetryPolicy(max_attempts=5, base_delay_s=0.5, jitter=lambda: 1.0)
    assert policy.delay(0, 7.0) == 7.0  # not 0.5
    assert policy.delay(3, 0.0) == 0.0
    assert policy.delay(0, None) == 0.5


def test_it_gives_up_after_max_attempts_or_an_unreasonable_retry_after():
    policy = RetryPolicy(max_attempts=3, max_retry_after_s=60, jitter=lambda: 1.0)
    assert policy.delay(1, None) is not None
    assert policy.delay(2, None) is None  # the third attempt was the last
    assert policy.delay(0, 61) is None  # raised with retry_after for the caller to schedule
    assert RetryPolicy(max_attempts=1).delay(0, 1) is None
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        (" 1 ", 1.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("Fri, 27 Nov 2026 10:00:30 GMT", 30.0),
        ("Fri, 27 Nov 2026 09:59:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header, seconds):
    now = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds
