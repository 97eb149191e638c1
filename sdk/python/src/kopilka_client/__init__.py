"""Kopilka's Python client: send signed, retried, idempotent webhooks; wait for a spend's
outcome; read balances; verify Kopilka's outbound webhooks; follow the live event stream.

    from kopilka_client import KopilkaClient, AsyncKopilkaClient, verify
"""

from kopilka_client.aio import AsyncEventStream, AsyncKopilkaClient
from kopilka_client.client import EventStream, KopilkaClient
from kopilka_client.errors import (
    AuthError,
    KopilkaError,
    NotFound,
    RateLimited,
    RetryableError,
    Unavailable,
    ValidationError,
    WebhookVerificationError,
)
from kopilka_client.models import Customer, Outcome, Receipt, StreamEvent
from kopilka_client.payloads import delivery_id
from kopilka_client.retry import RetryPolicy
from kopilka_client.signing import sign_headers, verify
from kopilka_client.stream import ReconnectPolicy

__version__ = "0.1.0"
__all__ = [
    "AsyncEventStream",
    "AsyncKopilkaClient",
    "AuthError",
    "Customer",
    "EventStream",
    "KopilkaClient",
    "KopilkaError",
    "NotFound",
    "Outcome",
    "RateLimited",
    "Receipt",
    "ReconnectPolicy",
    "RetryPolicy",
    "RetryableError",
    "StreamEvent",
    "Unavailable",
    "ValidationError",
    "WebhookVerificationError",
    "delivery_id",
    "sign_headers",
    "verify",
]
