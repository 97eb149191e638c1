"""Send-rate pacing for the Telegram notifier: a per-bot token bucket and per-chat spacing.

Telegram allows a bot about 30 messages a second overall and one a second per chat, and answers
429 with `retry_after` beyond that. Both limits are kept here, on an injectable clock so the
unit tests need no sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up (burst 1 = evenly spaced sends)."""

    def __init__(
        self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.burst, self.clock = rate, max(burst, 1.0), clock
        self.tokens, self.stamp = self.burst, clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self) -> float:
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def try_take(self) -> bool:
        if self.wait_time() > 0:
            return False
        self.tokens -= 1
        return True

    async def take(self) -> None:
        while not self.try_take():  # noqa: ASYNC110 - a timed wait, nothing to signal
            await asyncio.sleep(self.wait_time())


class ChatPacer:
    """At most one message per `interval_s` per chat; a chat can be paused (429 retry_after)."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.clock = interval_s, clock
        self._next: dict[int, float] = {}

    def wait_time(self, chat_id: int) -> float:
        return max(0.0, self._next.get(chat_id, 0.0) - self.clock())

    def sent(self, chat_id: int) -> None:
        self._next[chat_id] = max(self._next.get(chat_id, 0.0), self.clock() + self.interval_s)

    def pause(self, chat_id: int, seconds: float) -> None:
        self._next[chat_id] = max(self._next.get(chat_id, 0.0), self.clock() + seconds)

    def forget_idle(self) -> None:
        now = self.clock()
        self._next = {chat: t for chat, t in self._next.items() if t > now}
