"""The shared core, driven by hand: no socket, no sleep. Each test plays Kopilka's answers into
the exchange and reads what the client would do next."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import httpx
import pytest
from kopilka_client import (
    AuthError,
    KopilkaError,
    NotFound,
    RateLimited,
    RetryPolicy,
    Unavailable,
    ValidationError,
    signing,
)
from kopilka_client.core import Answered, Calls, Config, Sleep, error_for
from kopilka_client.errors import RetryableError

from ingest import signatures
from kopilka.core import standard_webhooks

SECRET = standard_webhooks.new_secret()
URL_SECRET = "whk_" + "x"  # a webhook URL's secret, made up
FIXED = RetryPolicy(max_attempts=4, base_delay_s=0.5, jitter=lambda: 1.0)


def answer(status: int, body=None, **headers) -> httpx.Response:
    content = json.dumps(body).encode() if body is not None else b""
    return httpx.Response(status, content=content, headers=headers)


def refusal(status: int, error: str, field: str | None, reason: str, **headers):
    return answer(status, {"error": error, "field": field, "reason": reason}, **headers)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ValidationError),
        (413, ValidationError),
        (415, ValidationError),
        (422, ValidationError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFound),
        (429, RateLimited),
        (503, Unavailable),
        (502, Unavailable),
        (409, RetryableError),
        (500, KopilkaError),
    ],
)
def test_each_refusal_maps_to_its_error(status, kind):
    err = error_for(refusal(status, "some_code", "payload.x", "because", **{"Retry-After": "3"}))
    assert type(err) is kind
    assert (err.status, err.code, err.field, err.reason) == (
        status,
        "some_code",
        "payload.x",
        "because",
    )
    if isinstance(err, RetryableError):
        assert err.retry_after == 3.0


def test_a_422_names_the_field_in_the_message_too():
    err = error_for(refusal(422, "invalid_field", "payload.amount", "must not be negative"))
    assert err.field == "payload.amount"
    assert str(err) == "422 invalid_field field 'payload.amount': must not be negative"


def test_a_body_that_is_not_json_still_gives_a_reason():
    err = error_for(httpx.Response(502, text="<html>bad gateway</html>"))
    assert isinstance(err, Unavailable) and "bad gateway" in err.reason
    assert error_for(answer(202, {"status": "accepted"})) is None


def calls(**config) -> Calls:
    return Calls(
        Config(
            "http://k.test/",
            webhook_secret=URL_SECRET,
            signing_secret=SECRET,
            retry=FIXED,
            **config,
        )
    )


PURCHASE = {"action": "purchase", "payload": {"orderId": "O-1", "amount": "5", "email": "a@b.c"}}
ACCEPTED = {"status": "accepted", "event_id": "ev1", "action": "purchase", "orders": ["O-1"]}


def test_a_503_with_retry_after_is_retried_after_it_with_the_same_webhook_id_signed_afresh(
    monkeypatch,
):
    clock = iter([time.time() - 2, time.time()])
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: next(clock)))
    steps, msg_id = calls().webhook(PURCHASE, wait=None, webhook_id=None)
    first = next(steps)
    assert first.url == "http://k.test/api/webhook/whk_x"
    assert steps.send(
        refusal(503, "broker_unavailable", None, "later", **{"Retry-After": "2"})
    ) == Sleep(2.0)
    second = steps.send(None)
    assert second.headers["webhook-id"] == first.headers["webhook-id"] == msg_id
    assert second.headers["webhook-timestamp"] != first.headers["webhook-timestamp"]
    assert second.content == first.content
    for request in (first, second):  # each attempt verifies at Kopilka on its own
        outcome = signatures.check(
            "required", [SECRET], request.headers, request.content, now=time.time()
        )
        assert outcome == signatures.Verified("standard-webhooks", msg_id)
    with pytest.raises(StopIteration) as done:
        steps.send(answer(202, ACCEPTED))
    assert done.value.value.attempts == 2
    assert calls().receipt(done.value.value, msg_id).event_id == "ev1"


def test_connection_errors_and_429_back_off_then_the_last_error_is_raised():
    steps, _ = calls().webhook(PURCHASE, wait=None, webhook_id=None)
    request = next(steps)
    assert steps.send(httpx.ConnectError("refused", request=request)) == Sleep(0.5)
    next(steps)
    assert steps.send(httpx.ReadTimeout("slow", request=request)) == Sleep(1.0)
    next(steps)
    assert steps.send(refusal(429, "rate_limited", None, "slow down")) == Sleep(2.0)
    next(steps)
    with pytest.raises(RateLimited) as err:  # the fourth attempt was the last
        steps.send(refusal(429, "rate_limited", None, "slow down", **{"Retry-After": "9"}))
    assert err.value.retry_after == 9.0


def test_a_422_is_not_retried():
    steps, _ = calls().webhook(PURCHASE, wait=None, webhook_id=None)
    next(steps)
    with pytest.raises(ValidationError) as err:
        steps.send(refusal(422, "invalid_field", "payload.amount", "must not be negative"))
    assert err.value.field == "payload.amount"


def test_a_retry_after_beyond_the_policy_is_raised_at_once_for_the_caller_to_schedule():
    steps, _ = calls().webhook(PURCHASE, wait=None, webhook_id=None)
    next(steps)
    with pytest.raises(Unavailable) as err:
        steps.send(refusal(503, "broker_unavailable", None, "later", **{"Retry-After": "3600"}))
    assert err.value.retry_after == 3600


def test_wait_asks_prefer_and_waits_longer_than_kopilka_holds_the_answer():
    steps, _ = calls(timeout_s=10).webhook(PURCHASE, wait=5, webhook_id="mine")
    request = next(steps)
    assert request.headers["Prefer"] == "wait=5"
    assert request.headers["webhook-id"] == "mine"
    assert request.extensions["timeout"]["read"] == 15


def test_without_a_signing_secret_nothing_is_signed():
    cfg = Config("http://k.test", webhook_secret=URL_SECRET)
    steps, msg_id = Calls(cfg).webhook(PURCHASE, wait=None, webhook_id=None)
    request = next(steps)
    assert msg_id is None and "webhook-signature" not in request.headers
    with pytest.raises(ValueError, match="signing_secret"):
        Calls(cfg).webhook(PURCHASE, wait=None, webhook_id="mine")


def test_the_read_api_request_and_its_answer():
    cfg = Config("http://k.test", api_key="kpk_1", retry=FIXED)
    steps = Calls(cfg).customer("Anna@Example.com", None, 5)
    request = next(steps)
    assert request.headers["Authorization"] == "Bearer kpk_1"
    assert request.url.params["email"] == "Anna@Example.com"
    assert request.url.params["limit"] == "5"
    with pytest.raises(NotFound):
        steps.send(refusal(404, "customer_not_found", "email", "no customer with this email"))
    with pytest.raises(ValueError):
        Calls(cfg).customer(None, None, None)
    with pytest.raises(ValueError, match="api_key"):
        Calls(Config("http://k.test")).customer("a@b.c", None, None)


def test_a_customer_answer_becomes_typed():
    body = {
        "customer": {
            "id": "c1",
            "email": "a@b.c",
            "phone": None,
            "name": None,
            "created_at": "2026-01-01T00:00:00+00:00",
            "referral_code": "ABCD1234",
            "referrer_id": None,
        },
        "balance": {
            "total": 250,
            "active": 250,
            "pending": 0,
            "expiring_30d": 0,
            "next_expiry": None,
        },
        "level": {"name": None, "percent": "5", "lifetime_spend": "5000", "next": None},
        "ledger": [
            {
                "event_id": "e1",
                "type": "bonus_awarded",
                "order_id": "O-1",
                "amount": "5000",
                "delta": 250,
                "balance_after": 250,
                "reason": "purchase",
                "expires_at": None,
                "occurred_at": "2026-01-01T00:00:00+00:00",
                "new": 1,
            }
        ],
    }
    customer = Calls.customer_of(Answered(answer(200, body), 1))
    assert customer.balance.active == 250 and customer.level.lifetime_spend == "5000"
    assert customer.ledger[0].delta == 250 and customer.raw["ledger"][0]["new"] == 1
