"""Everything the sync and the async client share, free of I/O.

A call is a generator (`exchange`) that yields what to do next, an `httpx.Request` to send or a
`Sleep`, and is sent back what happened (the `httpx.Response`, or the `httpx.TransportError`).
The two clients only drive it: `drive_sync` with `httpx.Client` and `time.sleep`, `drive_async`
with `httpx.AsyncClient` and `asyncio.sleep`. Retries, signing, `Retry-After` and the mapping
of answers to results and typed errors are written once, here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from kopilka_client import payloads
from kopilka_client.errors import (
    AuthError,
    KopilkaError,
    NotFound,
    RateLimited,
    RetryableError,
    Unavailable,
    ValidationError,
)
from kopilka_client.models import Customer, Receipt
from kopilka_client.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after
from kopilka_client.signing import sign_headers

USER_AGENT = "kopilka-client/0.1 (python)"
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Answered:
    response: httpx.Response
    attempts: int


Step = httpx.Request | Sleep
Reply = httpx.Response | httpx.TransportError | None
Exchange = Generator[Step, Reply, Answered]


@dataclass(frozen=True)
class Config:
    base_url: str
    webhook_secret: str | None = None
    signing_secret: str | None = None
    api_key: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def webhook_url(self) -> str:
        if not self.webhook_secret:
            raise ValueError("sending webhooks needs webhook_secret (the whk_… in the shop's URL)")
        return f"{self.base_url.rstrip('/')}/api/webhook/{self.webhook_secret}"

    def bearer(self) -> dict[str, str]:
        if not self.api_key:
            raise ValueError("the read API and the event stream need api_key (kpk_…)")
        return {"Authorization": f"Bearer {self.api_key}"}


def error_for(response: httpx.Response) -> KopilkaError | None:
    """None for a 2xx; else the typed error the answer means (retryable or not)."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    fields = body if isinstance(body, dict) else {}
    reason = str(fields.get("reason") or body or response.reason_phrase or "no reason given")
    kw = {"status": status, "code": fields.get("error"), "field": fields.get("field"), "body": body}
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429:
        return RateLimited(reason, retry_after=retry_after, **kw)
    if status in (502, 503, 504):
        return Unavailable(reason, retry_after=retry_after, **kw)
    if status in RETRY_STATUSES:
        return RetryableError(reason, retry_after=retry_after, **kw)
    if status in (400, 413, 415, 422):
        return ValidationError(reason, **kw)
    if status in (401, 403):
        return AuthError(reason, **kw)
    if status == 404:
        return NotFound(reason, **kw)
    return KopilkaError(reason, **kw)


def exchange(build: Callable[[], httpx.Request], policy: RetryPolicy) -> Exchange:
    """Send `build()` (built afresh for every attempt) until it succeeds, fails for good, or the
    policy gives up; then the last error is raised."""
    attempt = 0
    while True:
        reply = yield build()
        if isinstance(reply, httpx.Response):
            failure = error_for(reply)
            if failure is None:
                return Answered(reply, attempt + 1)
            if not isinstance(failure, RetryableError):
                raise failure
        else:
            failure = Unavailable(
                f"cannot reach Kopilka ({type(reply).__name__}: {reply})", retry_after=None
            )
        delay = policy.delay(attempt, failure.retry_after)
        if delay is None:
            raise failure
        yield Sleep(delay)
        attempt += 1


def drive_sync(steps: Exchange, client: httpx.Client) -> Answered:
    try:
        step = next(steps)
        while True:
            reply: Reply = None
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
            else:
                try:
                    reply = client.send(step)
                except httpx.TransportError as exc:
                    reply = exc
            step = steps.send(reply)
    except StopIteration as done:
        answered: Answered = done.value
        return answered


async def drive_async(steps: Exchange, client: httpx.AsyncClient) -> Answered:
    try:
        step = next(steps)
        while True:
            reply: Reply = None
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
            else:
                try:
                    reply = await client.send(step)
                except httpx.TransportError as exc:
                    reply = exc
            step = steps.send(reply)
    except StopIteration as done:
        answered: Answered = done.value
        return answered


class Calls:
    """The requests of every operation and what their answers become."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def webhook(
        self, body: Mapping[str, Any], *, wait: float | None, webhook_id: str | None
    ) -> tuple[Exchange, str | None]:
        """The exchange of one webhook, and the webhook-id it is signed with (None: unsigned)."""
        cfg = self.config
        url = cfg.webhook_url()
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        timeout = cfg.timeout_s
        if wait:
            headers["Prefer"] = f"wait={wait:g}"
            timeout += wait
        msg_id = None
        if cfg.signing_secret:
            msg_id = webhook_id or payloads.delivery_id(body)
        elif webhook_id:  # Kopilka reads a webhook-id only from a signed request
            raise ValueError("webhook_id needs signing_secret: unsigned requests carry no id")

        def build() -> httpx.Request:
            signed = dict(headers)
            if cfg.signing_secret and msg_id:  # every attempt afresh: a current timestamp
                signed.update(sign_headers(cfg.signing_secret, msg_id, content))
            return httpx.Request(
                "POST", url, content=content, headers=signed, extensions=_timeout(timeout)
            )

        return exchange(build, cfg.retry), msg_id

    @staticmethod
    def receipt(answered: Answered, webhook_id: str | None) -> Receipt:
        return Receipt.from_json(
            answered.response.json(), webhook_id=webhook_id, attempts=answered.attempts
        )

    def customer(self, email: str | None, phone: str | None, limit: int | None) -> Exchange:
        if bool(email) == bool(phone):
            raise ValueError("name the customer by email or by phone (one of them)")
        params: dict[str, str] = {"email": email} if email else {"phone": str(phone)}
        if limit is not None:
            params["limit"] = str(limit)
        url = f"{self.config.base_url.rstrip('/')}/api/v1/customers"
        headers = {**self.config.bearer(), "User-Agent": USER_AGENT}

        def build() -> httpx.Request:
            return httpx.Request(
                "GET",
                url,
                params=params,
                headers=headers,
                extensions=_timeout(self.config.timeout_s),
            )

        return exchange(build, self.config.retry)

    @staticmethod
    def customer_of(answered: Answered) -> Customer:
        return Customer.from_json(answered.response.json())


def _timeout(seconds: float) -> dict[str, Any]:
    return {"timeout": httpx.Timeout(seconds).as_dict()}
