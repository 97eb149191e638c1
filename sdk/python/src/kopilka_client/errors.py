"""Typed errors: one class per thing a caller does differently about it.

Every error Kopilka answers carries a machine `code`, the `field` at fault (or None) and a
`reason` for a human (`{"error", "field", "reason"}`); the exceptions keep all three.
"""

from __future__ import annotations

from typing import Any


class KopilkaError(Exception):
    """Anything Kopilka refused, or could not be reached for."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        body: Any = None,
    ) -> None:
        self.reason = reason
        self.status = status
        self.code = code
        self.field = field
        self.body = body
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [str(self.status)] if self.status is not None else []
        if self.code:
            parts.append(self.code)
        if self.field:
            parts.append(f"field {self.field!r}")
        head = " ".join(parts)
        return f"{head}: {self.reason}" if head else self.reason


class ValidationError(KopilkaError):
    """The request itself is wrong (400, 413, 415, 422): fix `field`, do not retry as is."""


class AuthError(KopilkaError):
    """401 (signature refused, unknown API key) or 403 (the shop is disabled)."""


class NotFound(KopilkaError):
    """404: an unknown webhook secret, or no such customer."""


class RetryableError(KopilkaError):
    """Kopilka asked to come back later; `retry_after` is its `Retry-After` in seconds."""

    def __init__(self, reason: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(reason, **kw)


class RateLimited(RetryableError):
    """429: over the shop's rate limit, still so after the client's retries."""


class Unavailable(RetryableError):
    """503/502/504, or the connection failed, still so after the client's retries."""


class WebhookVerificationError(KopilkaError):
    """An outbound webhook from Kopilka that does not verify: a missing header, a timestamp
    outside the tolerance, or no signature that matches the secret. Answer it 400 and drop it."""
