"""When to try a request again, and after how long: capped exponential backoff with jitter that
gives way to the server's `Retry-After`.

Retried: 429 (rate limited), 503/502/504 (Kafka or the database away, a proxy in between),
409 (`delivery_in_progress`: the same webhook-id is being stored right now), 408, and
connection errors and timeouts. Every retry of a webhook carries the same `webhook-id`, so a
retry of something Kopilka did store is answered `duplicate`, never stored twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({408, 409, 429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` tries in all (1 = no retry). Attempt n (from 0) waits
    `min(max_delay_s, base_delay_s * 2**n)`, the upper half of it at random (jitter, so that many
    clients do not come back in step); a `Retry-After` from Kopilka is waited exactly instead.
    A `Retry-After` longer than `max_retry_after_s` is not waited: the error is raised with it,
    for the caller to schedule."""

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 10.0
    max_retry_after_s: float = 60.0
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (0-based) when the server said none."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2.0**attempt))
        return ceiling / 2 + ceiling / 2 * self.jitter()

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds before the next attempt, or None: give up (attempts used, or too long)."""
        if attempt + 1 >= self.max_attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        return self.backoff(attempt)


NO_RETRY = RetryPolicy(max_attempts=1)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (RFC 9110: delay-seconds or an HTTP date); None if absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)
