"""The live event stream (`GET /api/v1/events/stream`, Server-Sent Events), free of I/O.

`Cursor` is what the sync and the async iterator share: the request to (re)connect with, an SSE
parser (https://html.spec.whatwg.org/multipage/server-sent-events.html) fed line by line, the
last event id (sent back as `Last-Event-ID` on every reconnect, so nothing is missed or
repeated), and how long to wait before the next try: the server's `retry:` if it sent one,
else capped exponential backoff, reset by every event that arrives. Comment lines (`: …`, the
heartbeats) only prove the connection alive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx

from kopilka_client.core import USER_AGENT, Config, error_for
from kopilka_client.errors import KopilkaError, RetryableError, Unavailable
from kopilka_client.models import StreamEvent
from kopilka_client.retry import RetryPolicy

STREAM_PATH = "/api/v1/events/stream"


@dataclass(frozen=True)
class ReconnectPolicy:
    """`max_failures` failed connections in a row before the error is raised (None: never give
    up); `idle_timeout_s`: no byte (not even a heartbeat) for this long = a dead connection."""

    backoff: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(base_delay_s=0.5, max_delay_s=30.0)
    )
    max_failures: int | None = None
    idle_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0


@dataclass
class SseParser:
    """Line-by-line SSE parsing; `feed` returns an event when a blank line completes one."""

    last_event_id: str | None = None  # committed when an event completes, as the spec says
    retry_ms: int | None = None
    _data: list[str] = field(default_factory=list)
    _type: str = ""
    _id: str | None = None  # the `id:` of the event being read

    def __post_init__(self) -> None:
        self._id = self.last_event_id

    def feed(self, line: str) -> StreamEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the heartbeat
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> StreamEvent | None:
        data, kind = self._data, self._type
        self._data, self._type = [], ""
        self.last_event_id = self._id  # an event cut off by a lost connection does not count
        if not data:
            return None
        text = "\n".join(data)
        try:
            payload = json.loads(text)
        except ValueError:
            payload = {"data": text}
        if not isinstance(payload, dict):
            payload = {"data": payload}
        kind = kind or str(payload.get("type") or "message")
        return StreamEvent(id=self.last_event_id, type=kind, data=payload)


class Cursor:
    """One subscription's state across reconnects."""

    def __init__(
        self,
        config: Config,
        *,
        types: Iterable[str] | None,
        last_event_id: str | None,
        policy: ReconnectPolicy,
    ) -> None:
        self.config, self.policy = config, policy
        self.types = sorted(set(types)) if types else None
        self.parser = SseParser(last_event_id=last_event_id)
        self.failures = 0

    @property
    def last_event_id(self) -> str | None:
        return self.parser.last_event_id

    def request(self) -> httpx.Request:
        headers = {
            **self.config.bearer(),
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "User-Agent": USER_AGENT,
        }
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        params = {"types": ",".join(self.types)} if self.types else None
        timeout = httpx.Timeout(self.policy.idle_timeout_s, connect=self.policy.connect_timeout_s)
        return httpx.Request(
            "GET",
            self.config.base_url.rstrip("/") + STREAM_PATH,
            params=params,
            headers=headers,
            extensions={"timeout": timeout.as_dict()},
        )

    def connected(self, response: httpx.Response) -> None:
        """Raise for an answer that is not a stream: for good (401, 404, ...) or for a retry."""
        failure = error_for(response)
        if failure is not None:
            raise failure
        kind = response.headers.get("Content-Type", "")
        if not kind.startswith("text/event-stream"):
            raise KopilkaError(
                f"expected text/event-stream, got {kind or 'no content type'}",
                status=response.status_code,
            )
        self.parser = SseParser(last_event_id=self.last_event_id, retry_ms=self.parser.retry_ms)

    def feed(self, line: str) -> StreamEvent | None:
        event = self.parser.feed(line)
        if event is not None:
            self.failures = 0
        return event

    def failed(self, error: BaseException | None) -> float:
        """The connection ended (`error` None: closed by the server). Seconds to wait before
        reconnecting; raises when the error is not one to retry, or the failures ran out."""
        if isinstance(error, KopilkaError) and not isinstance(error, RetryableError):
            raise error
        self.failures += 1
        limit = self.policy.max_failures
        if limit is not None and self.failures > limit:
            if isinstance(error, KopilkaError):
                raise error
            raise Unavailable(f"the event stream failed {self.failures} times in a row: {error}")
        hinted = error.retry_after if isinstance(error, RetryableError) else None
        if hinted is None and self.parser.retry_ms is not None:
            hinted = self.parser.retry_ms / 1000
        if hinted is not None:
            return min(hinted, self.policy.backoff.max_retry_after_s)
        return self.policy.backoff.backoff(self.failures - 1)
