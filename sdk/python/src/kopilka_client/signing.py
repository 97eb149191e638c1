"""Standard Webhooks (https://www.standardwebhooks.com), both ways.

Headers: `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
space-separated list of `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{raw body}">`, keyed with
the base64-decoded part of a `whsec_…` secret. The client signs its webhooks with the shop's
signing secret (`sign_headers`); a shop checks Kopilka's outbound deliveries with the endpoint's
secret (`verify`). Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kopilka_client.errors import WebhookVerificationError

PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300  # Kopilka's own window, both ways


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret: its base64 part, decoded."""
    body = secret.removeprefix(PREFIX)
    try:  # decoded as Kopilka decodes it, so both derive the same key from any secret
        return base64.b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("a signing secret is 'whsec_' followed by base64") from None


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of a message."""
    message = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_headers(
    secret: str, msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers for one delivery attempt (sign every attempt afresh: the timestamp
    must be within 5 minutes of the receiver's clock)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature(secret, msg_id, ts, body),
    }


def verify(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str | Sequence[str],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a webhook Kopilka sent and return its event (the JSON body).

    `headers` as received (any case), `body` the raw bytes (not re-serialised JSON), `secret` the
    endpoint's `whsec_…` (or several, during a rotation). Raises `WebhookVerificationError` that
    says what is wrong.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    lowered = {k.lower(): v for k, v in headers.items()}
    values = {}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        value = (lowered.get(name) or "").strip()
        if not value:
            raise WebhookVerificationError(f"the {name} header is missing", field=name)
        values[name] = value
    try:
        timestamp = math.floor(float(values["webhook-timestamp"]))
    except (ValueError, OverflowError):
        raise WebhookVerificationError(
            "webhook-timestamp is not Unix seconds", field="webhook-timestamp"
        ) from None
    skew = (time.time() if now is None else now) - timestamp
    if abs(skew) > tolerance_s:
        when = "old" if skew > 0 else "in the future"
        raise WebhookVerificationError(
            f"webhook-timestamp is {int(abs(skew))} s {when}; at most {tolerance_s:g} s is "
            "accepted (a replay, or a clock off)",
            field="webhook-timestamp",
        )
    given = _v1_signatures(values["webhook-signature"])
    if not given:
        raise WebhookVerificationError(
            "webhook-signature holds no 'v1,<base64>' signature", field="webhook-signature"
        )
    message = f"{values['webhook-id']}.{timestamp}.".encode() + raw
    secrets = [secret] if isinstance(secret, str) else list(secret)
    for candidate in secrets:
        expected = hmac.new(secret_key(candidate), message, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, sig) for sig in given):
            try:
                event = json.loads(raw)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                raise WebhookVerificationError("the signed body is not a JSON object")
            return event
    raise WebhookVerificationError(
        "no signature matches this secret: check the endpoint's whsec_ secret and that the body "
        "is the raw bytes received",
        field="webhook-signature",
    )


def _v1_signatures(header: str) -> list[bytes]:
    found = []
    for item in header.split():
        version, _, value = item.partition(",")
        if version != "v1" or not value:
            continue
        try:
            found.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found
