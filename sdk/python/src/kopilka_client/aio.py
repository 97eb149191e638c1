"""The asynchronous client: `AsyncKopilkaClient`, over `httpx.AsyncClient` (asyncio).

The same calls as `KopilkaClient`, awaited; the same core decides everything but the I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterable, Mapping
from typing import Any

import httpx

from kopilka_client.actions import Actions
from kopilka_client.core import DEFAULT_TIMEOUT_S, Calls, Config, drive_async
from kopilka_client.errors import KopilkaError
from kopilka_client.models import Customer, Receipt, StreamEvent
from kopilka_client.retry import RetryPolicy
from kopilka_client.stream import Cursor, ReconnectPolicy


class AsyncKopilkaClient(Actions[Awaitable[Receipt]]):
    """See `KopilkaClient` for the arguments; use it as `async with AsyncKopilkaClient(...)`."""

    def __init__(
        self,
        base_url: str,
        *,
        webhook_secret: str | None = None,
        signing_secret: str | None = None,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = httpx.AsyncClient(transport=transport, follow_redirects=False)

    async def __aenter__(self) -> AsyncKopilkaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def send(
        self, body: Mapping[str, Any], *, wait: float | None = None, webhook_id: str | None = None
    ) -> Awaitable[Receipt]:
        steps, msg_id = self._calls.webhook(body, wait=wait, webhook_id=webhook_id)

        async def run() -> Receipt:
            return self._calls.receipt(await drive_async(steps, self._http), msg_id)

        return run()

    async def get_customer(
        self, *, email: str | None = None, phone: str | None = None, limit: int | None = None
    ) -> Customer:
        steps = self._calls.customer(email, phone, limit)
        return self._calls.customer_of(await drive_async(steps, self._http))

    def events(
        self,
        *,
        types: Iterable[str] | None = None,
        last_event_id: str | None = None,
        policy: ReconnectPolicy | None = None,
    ) -> AsyncEventStream:
        cursor = Cursor(
            self.config,
            types=types,
            last_event_id=last_event_id,
            policy=policy or ReconnectPolicy(),
        )
        return AsyncEventStream(cursor, self._http)


class AsyncEventStream(AsyncIterator[StreamEvent]):
    def __init__(self, cursor: Cursor, http: httpx.AsyncClient) -> None:
        self._cursor, self._http = cursor, http
        self._events = self._run()

    @property
    def last_event_id(self) -> str | None:
        return self._cursor.last_event_id

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        cursor = self._cursor
        while True:
            error: BaseException | None = None
            try:
                response = await self._http.send(cursor.request(), stream=True)
                try:
                    if response.status_code >= 300:
                        await response.aread()
                    cursor.connected(response)
                    async for line in response.aiter_lines():
                        event = cursor.feed(line)
                        if event is not None:
                            yield event
                finally:
                    await response.aclose()
            except (httpx.TransportError, httpx.StreamError, KopilkaError) as exc:
                error = exc  # cursor.failed re-raises what is final (401, 404, ...)
            await asyncio.sleep(cursor.failed(error))
