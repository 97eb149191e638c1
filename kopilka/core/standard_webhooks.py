"""Standard Webhooks signing (https://www.standardwebhooks.com), shared by both directions.

Inbound, the ingress verifies shops' requests with it (ingest/signatures.py); outbound, the
dispatcher signs deliveries to shops with it (sinks/webhook_delivery.py). Headers: `webhook-id`,
`webhook-timestamp` (Unix seconds), `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
`id.timestamp.body`, keyed by the base64 part of a `whsec_` secret). A few lines of the standard
library; the tests check them against the reference `standardwebhooks` package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"  # the spec's prefix for a base64 HMAC key


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes, the form Standard Webhooks libraries expect."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret: its base64 part, decoded."""
    body = secret.removeprefix(PREFIX)
    return base64.b64decode(body + "=" * (-len(body) % 4))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature, as a sender puts it in `webhook-signature`."""
    message = f"{msg_id}.{timestamp}.".encode() + body
    return (
        "v1," + base64.b64encode(hmac.new(key(secret), message, hashlib.sha256).digest()).decode()
    )


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
