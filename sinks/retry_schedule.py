"""When to try a delivery next: a Svix-like schedule with jitter, and `Retry-After`."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A Retry-After beyond this is treated as this: a shop cannot park a delivery for a week.
MAX_RETRY_AFTER_S = 24 * 3600.0


class RetrySchedule:
    """`delays[i]` is the wait before attempt i+1 (delays[0] is the first attempt, usually 0)."""

    def __init__(self, delays: list[float], jitter: float = 0.2, rng: random.Random | None = None):
        if not delays or any(d < 0 for d in delays):
            raise ValueError("a retry schedule needs at least one delay, none negative")
        self.delays, self.jitter = delays, jitter
        self._rng = rng or random.Random()

    @property
    def attempts(self) -> int:
        return len(self.delays)

    def next_delay(self, attempts_made: int, retry_after: float | None = None) -> float | None:
        """Seconds until the next attempt after `attempts_made` of them; None when exhausted."""
        if attempts_made >= len(self.delays):
            return None
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
        base = self.delays[attempts_made]
        return base * (1 + self._rng.uniform(-self.jitter, self.jitter)) if base else 0.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
