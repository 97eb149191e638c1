"""The synchronous client: `KopilkaClient`, over `httpx.Client`."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import Any

import httpx

from kopilka_client.actions import Actions
from kopilka_client.core import DEFAULT_TIMEOUT_S, Calls, Config, drive_sync
from kopilka_client.errors import KopilkaError
from kopilka_client.models import Customer, Receipt, StreamEvent
from kopilka_client.retry import RetryPolicy
from kopilka_client.stream import Cursor, ReconnectPolicy


class KopilkaClient(Actions[Receipt]):
    """A shop's client of Kopilka.

    `base_url`: where Kopilka's ingress answers (`https://kopilka.example`); `webhook_secret`:
    the `whk_…` of the shop's webhook URL; `signing_secret`: the shop's `whsec_…` (webhooks are
    then signed with Standard Webhooks, and retries are de-duplicated by their `webhook-id`);
    `api_key`: the shop's `kpk_…` for the read API and the event stream. Each is needed only by
    the calls that use it. `transport` is any httpx transport (a proxy, a test double).
    """

    def __init__(
        self,
        base_url: str,
        *,
        webhook_secret: str | None = None,
        signing_secret: str | None = None,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = Config(
            base_url=base_url,
            webhook_secret=webhook_secret,
            signing_secret=signing_secret,
            api_key=api_key,
            retry=retry or RetryPolicy(),
            timeout_s=timeout_s,
        )
        self._calls = Calls(self.config)
        self._http = httpx.Client(transport=transport, follow_redirects=False)

    def __enter__(self) -> KopilkaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(
        self, body: Mapping[str, Any], *, wait: float | None = None, webhook_id: str | None = None
    ) -> Receipt:
        """Send any standard body (`{"action", "payload"}`); `wait=N` asks for the outcome
        (`Prefer: wait=N`, N up to 10 s); `webhook_id` overrides the derived idempotency id."""
        steps, msg_id = self._calls.webhook(body, wait=wait, webhook_id=webhook_id)
        return self._calls.receipt(drive_sync(steps, self._http), msg_id)

    def get_customer(
        self, *, email: str | None = None, phone: str | None = None, limit: int | None = None
    ) -> Customer:
        """The customer's balance, level and ledger; `NotFound` when the shop has no such one."""
        return self._calls.customer_of(
            drive_sync(self._calls.customer(email, phone, limit), self._http)
        )

    def events(
        self,
        *,
        types: Iterable[str] | None = None,
        last_event_id: str | None = None,
        policy: ReconnectPolicy | None = None,
    ) -> EventStream:
        """The shop's live events, forever: reconnects by itself and resumes after the last
        event it yielded. Keep `stream.last_event_id` to resume in a later process."""
        cursor = Cursor(
            self.config,
            types=types,
            last_event_id=last_event_id,
            policy=policy or ReconnectPolicy(),
        )
        return EventStream(cursor, self._http)


class EventStream(Iterator[StreamEvent]):
    def __init__(self, cursor: Cursor, http: httpx.Client) -> None:
        self._cursor, self._http = cursor, http
        self._events = self._run()

    @property
    def last_event_id(self) -> str | None:
        return self._cursor.last_event_id

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def _run(self) -> Generator[StreamEvent, None, None]:
        cursor = self._cursor
        while True:
            error: BaseException | None = None
            try:
                response = self._http.send(cursor.request(), stream=True)
                try:
                    if response.status_code >= 300:
                        response.read()
                    cursor.connected(response)
                    for line in response.iter_lines():
                        event = cursor.feed(line)
                        if event is not None:
                            yield event
                finally:
                    response.close()
            except (httpx.TransportError, httpx.StreamError, KopilkaError) as exc:
                error = exc  # cursor.failed re-raises what is final (401, 404, ...)
            time.sleep(cursor.failed(error))
