"""Every credential the test session issued; test_logs_hold_no_secrets.py greps the run's logs
for each of them."""

from __future__ import annotations

SECRETS: set[str] = set()
_FIELDS = ("webhook_secret", "api_key", "signing_secret")


def remember(credentials: dict) -> dict:
    """Record the secrets in a `tenants create` / `rotate-secret` answer; return it unchanged."""
    SECRETS.update(credentials[k] for k in _FIELDS if credentials.get(k))
    return credentials
