"""Request signatures: Standard Webhooks and the original's `X-Signature`, verified per tenant.

Standard Webhooks (https://www.standardwebhooks.com): headers `webhook-id`, `webhook-timestamp`
(Unix seconds) and `webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256>` over
`"{id}.{timestamp}.{raw body}"`, keyed with the base64-decoded part of the tenant's `whsec_…`
secret. The timestamp must be within the tolerance of now, both ways.

`X-Signature`: hex HMAC-SHA256 of the raw body, keyed with the whole `whsec_…` string as UTF-8
(what `crypto.createHmac('sha256', secret)` does with it); `sha256=` in front is tolerated. It has
no timestamp, so it proves who sent a body but not when: replays of it are only caught by the
order-level idempotency downstream.

Modes: `off` ignores signature headers; `optional` accepts an unsigned request but refuses a
signed one whose signature does not verify; `required` refuses unsigned requests too. Every
secret the tenant holds (several during a rotation) is tried, each compare in constant time.
Pure and synchronous; `check` returns a `Verified`, `Unsigned` or `Refused`.

Hand-written rather than calling `standardwebhooks.Webhook.verify`: that takes one secret, parses
the body as JSON (ours may be a form) and says only "No matching signature found"; the tests
sign with that package and prove this accepts exactly what it accepts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kopilka.core import standard_webhooks

MAX_WEBHOOK_ID = 256
MAX_SIGNATURES = 16
_STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


@dataclass(frozen=True)
class Verified:
    scheme: str  # "standard-webhooks" | "x-signature"
    webhook_id: str | None = None  # Standard Webhooks only: the sender's idempotency key


@dataclass(frozen=True)
class Unsigned:
    """No signature and none required (or signatures are off for the tenant)."""


@dataclass(frozen=True)
class Refused:
    code: str
    reason: str
    field: str | None = None


Verdict = Verified | Unsigned | Refused  # what a signature check concludes


standard_key = standard_webhooks.key
sign_standard = standard_webhooks.sign


def sign_x_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check(
    mode: str,
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: int = 300,
) -> Verdict:
    """Verify a request's signature against the tenant's mode and secrets."""
    if mode == "off":
        return Unsigned()
    if any(name in headers for name in _STANDARD_HEADERS):
        return _standard(secrets, headers, body, now, tolerance_s)
    if "x-signature" in headers:
        return _x_signature(secrets, headers["x-signature"], body)
    if mode == "required":
        return Refused(
            "missing_signature",
            "this shop requires signed webhooks: send Standard Webhooks headers (webhook-id, "
            "webhook-timestamp, webhook-signature) or X-Signature",
            "webhook-signature",
        )
    return Unsigned()


def _standard(
    secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: float, tolerance_s: int
) -> Verdict:
    for name in _STANDARD_HEADERS:
        if not headers.get(name, "").strip():
            return Refused("missing_signature", f"the {name} header is missing or empty", name)
    webhook_id = headers["webhook-id"].strip()
    if len(webhook_id) > MAX_WEBHOOK_ID:
        return Refused(
            "invalid_signature", f"webhook-id is longer than {MAX_WEBHOOK_ID}", "webhook-id"
        )
    if not (webhook_id.isascii() and webhook_id.isprintable()):  # signed as bytes, kept as a key
        return Refused("invalid_signature", "webhook-id must be printable ASCII", "webhook-id")
    try:
        timestamp = math.floor(float(headers["webhook-timestamp"]))
    except (ValueError, OverflowError):
        timestamp = None
    if timestamp is None:
        return Refused(
            "invalid_signature", "webhook-timestamp must be Unix seconds", "webhook-timestamp"
        )
    skew = now - timestamp
    if skew > tolerance_s:
        return Refused(
            "stale_signature",
            f"webhook-timestamp is {int(skew)} s old; at most {tolerance_s} s is accepted "
            "(sign each delivery afresh, check the sender's clock)",
            "webhook-timestamp",
        )
    if -skew > tolerance_s:
        return Refused(
            "future_signature",
            f"webhook-timestamp is {int(-skew)} s in the future; at most {tolerance_s} s is "
            "accepted (check the sender's clock)",
            "webhook-timestamp",
        )
    given = _v1_signatures(headers["webhook-signature"])
    if not given:
        return Refused(
            "invalid_signature",
            "webhook-signature holds no 'v1,<base64>' signature",
            "webhook-signature",
        )
    message = f"{webhook_id}.{timestamp}.".encode() + body
    for secret in secrets:
        try:
            key = standard_key(secret)
        except (binascii.Error, ValueError):
            continue
        expected = hmac.new(key, message, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, sig) for sig in given):
            return Verified("standard-webhooks", webhook_id)
    return Refused(
        "invalid_signature",
        "no signature in webhook-signature matches: sign '{webhook-id}.{webhook-timestamp}.{raw "
        "body}' with HMAC-SHA256, keyed with the base64-decoded part of your whsec_ secret",
        "webhook-signature",
    )


def _v1_signatures(header: str) -> list[bytes]:
    found = []
    for item in header.split()[:MAX_SIGNATURES]:
        version, _, value = item.partition(",")
        if version != "v1" or not value:
            continue
        try:
            found.append(base64.b64decode(value))
        except (binascii.Error, ValueError):
            continue
    return found


def _x_signature(secrets: Sequence[str], header: str, body: bytes) -> Verdict:
    value = header.strip().lower().removeprefix("sha256=")
    try:
        given = bytes.fromhex(value)
    except ValueError:
        given = b""
    if len(given) != hashlib.sha256().digest_size:
        return Refused(
            "invalid_signature",
            "X-Signature must be the 64-digit hex HMAC-SHA256 of the raw body",
            "x-signature",
        )
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        if hmac.compare_digest(expected, given):
            return Verified("x-signature")
    return Refused(
        "invalid_signature",
        "X-Signature does not match: send hex HMAC-SHA256 of the raw body, keyed with your "
        "whole whsec_ secret",
        "x-signature",
    )
