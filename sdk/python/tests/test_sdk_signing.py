"""The client signs exactly what Kopilka verifies, and verifies exactly what Kopilka signs.

Kopilka's own code is the judge here: `ingest.signatures.check` (the ingress's verifier) and
`kopilka.core.standard_webhooks` (the dispatcher's signer), plus the reference `standardwebhooks`
package.
"""

from __future__ import annotations

import json
import time

import pytest
from kopilka_client import WebhookVerificationError, sign_headers, verify
from standardwebhooks.webhooks import Webhook

from ingest import signatures
from kopilka.core import standard_webhooks

SECRET = standard_webhooks.new_secret()
OTHER = standard_webhooks.new_secret()
BODY = json.dumps({"action": "purchase", "payload": {"orderId": "A-1", "amount": "10"}}).encode()


def test_what_the_client_signs_kopilkas_ingress_accepts():
    headers = sign_headers(SECRET, "kc_abc", BODY)
    outcome = signatures.check("required", [OTHER, SECRET], headers, BODY, now=time.time())
    assert outcome == signatures.Verified("standard-webhooks", "kc_abc")


def test_kopilka_refuses_a_tampered_body_or_another_secret():
    headers = sign_headers(SECRET, "kc_abc", BODY)
    tampered = signatures.check("required", [SECRET], headers, BODY + b" ", now=time.time())
    assert isinstance(tampered, signatures.Refused) and tampered.field == "webhook-signature"
    wrong = signatures.check("required", [OTHER], headers, BODY, now=time.time())
    assert isinstance(wrong, signatures.Refused)


def test_the_signature_is_the_reference_librarys():
    ts = 1_700_000_000
    ours = sign_headers(SECRET, "msg_1", BODY, timestamp=ts)["webhook-signature"]
    from datetime import UTC, datetime

    reference = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(ts, UTC), BODY.decode())
    assert ours == reference


def test_a_delivery_kopilka_signed_verifies_and_returns_the_event():
    event = {"event_id": "e1", "type": "bonus_awarded", "points": 250}
    body = json.dumps(event).encode()
    headers = standard_webhooks.headers(SECRET, "e1", int(time.time()), body)
    shouted = {k.upper(): v for k, v in headers.items()}  # header names arrive in any case
    assert verify(shouted, body, SECRET) == event
    assert verify(headers, body.decode(), [OTHER, SECRET]) == event  # str body; a rotation


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda h, b: (dict(h, **{"webhook-id": ""}), b), "webhook-id", "missing"),
        (
            lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
            "webhook-signature",
            "missing",
        ),
        (lambda h, b: (h, b + b"x"), "webhook-signature", "no signature matches"),
        (
            lambda h, b: (dict(h, **{"webhook-timestamp": "soon"}), b),
            "webhook-timestamp",
            "Unix seconds",
        ),
        (
            lambda h, b: (dict(h, **{"webhook-signature": "v2,abc"}), b),
            "webhook-signature",
            "no 'v1,",
        ),
    ],
)
def test_a_forged_delivery_raises_naming_what_is_wrong(change, field, words):
    body = b'{"event_id":"e1"}'
    headers, body = change(standard_webhooks.headers(SECRET, "e1", int(time.time()), body), body)
    with pytest.raises(WebhookVerificationError) as err:
        verify(headers, body, SECRET)
    assert err.value.field == field and words in err.value.reason


def test_a_stale_or_future_timestamp_is_refused_as_kopilka_refuses_it():
    body = b'{"event_id":"e1"}'
    now = time.time()
    old = standard_webhooks.headers(SECRET, "e1", int(now) - 301, body)
    with pytest.raises(WebhookVerificationError, match="301 s old"):
        verify(old, body, SECRET, now=now)
    future = standard_webhooks.headers(SECRET, "e1", int(now) + 400, body)
    with pytest.raises(WebhookVerificationError, match="in the future"):
        verify(future, body, SECRET, now=now)
    edge = standard_webhooks.headers(SECRET, "e1", int(now) - 299, body)
    assert verify(edge, body, SECRET, now=now) == {"event_id": "e1"}


def test_a_signature_list_during_a_rollover_verifies_with_either_secret():
    body = b'{"event_id":"e2"}'
    ts = int(time.time())
    both = " ".join(
        standard_webhooks.sign(s, "e2", ts, body) for s in (OTHER, SECRET)
    )  # Kopilka's format for several signatures
    headers = {"webhook-id": "e2", "webhook-timestamp": str(ts), "webhook-signature": both}
    assert verify(headers, body, SECRET)["event_id"] == "e2"
