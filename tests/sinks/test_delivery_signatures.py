"""Outbound deliveries are signed so the reference Standard Webhooks package verifies them."""

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from kopilka.core.standard_webhooks import headers, new_secret


def test_a_signed_delivery_verifies_with_the_standardwebhooks_package():
    secret = new_secret()
    body = b'{"type":"bonus_awarded","points":250}'
    signed = headers(secret, "7b0c9a8e-1111-4222-8333-944455556666", int(time.time()), body)
    assert signed["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, signed) == {"type": "bonus_awarded", "points": 250}


def test_a_tampered_body_a_wrong_secret_or_an_old_timestamp_fail():
    secret, body = new_secret(), b'{"points":250}'
    signed = headers(secret, "msg-1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"points":2500}', signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, signed)
    stale = headers(secret, "msg-1", int(time.time()) - 3600, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, stale)


def test_secrets_are_whsec_and_fresh_each_time():
    a, b = new_secret(), new_secret()
    assert a.startswith("whsec_") and a != b and len(a) > 30
