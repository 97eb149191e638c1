"""Standard Webhooks signatures for outbound deliveries (https://www.standardwebhooks.com).

Headers: `webhook-id` (the event id, the same on every retry, so the shop can de-duplicate),
`webhook-timestamp` (Unix seconds of this attempt), `webhook-signature` (`v1,` + base64
HMAC-SHA256 of `id.timestamp.body` keyed by the endpoint's secret). The secret is `whsec_` +
base64 of 24 random bytes, as the spec and the `standardwebhooks`/`svix` verifiers expect.
Signing is a few lines of the standard library; the test verifies with the reference package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
