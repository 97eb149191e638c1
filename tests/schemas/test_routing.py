"""webhooks.raw keys: one customer's requests together, one shop's requests spread."""

from __future__ import annotations

import json

from schemas.inbound import parse_webhook
from schemas.messages import CustomerRef
from schemas.routing import raw_key, tenant_of

T = "7d1c2a8e-4d0b-4c7e-9a33-2b8f0e5d7c41"


def _parsed(action: str, payload: dict):
    return parse_webhook(
        json.dumps({"action": action, "payload": payload}).encode(), "application/json"
    )


def test_one_customers_requests_share_a_key_whatever_the_action():
    who = {"email": "Ann@Example.com"}
    keys = {
        raw_key(T, _parsed("purchase", {**who, "orderId": "1", "amount": 10}), "e1"),
        raw_key(T, _parsed("purchase", {**who, "orderId": "2", "amount": 10}), "e2"),
        raw_key(T, _parsed("spend_bonuses", {**who, "orderId": "3", "points": 5}), "e3"),
        raw_key(T, _parsed("register_user", who), "e4"),
    }
    assert len(keys) == 1


def test_one_shops_customers_spread_over_many_keys():
    keys = {
        raw_key(
            T, _parsed("purchase", {"email": f"c{i}@x.ru", "orderId": str(i), "amount": 1}), "e"
        )
        for i in range(200)
    }
    assert len(keys) == 200
    assert all(tenant_of(k) == T for k in keys)


def test_keys_carry_no_email_or_phone():
    key = raw_key(
        T, _parsed("purchase", {"phone": "+79991112233", "orderId": "1", "amount": 1}), "e"
    )
    assert b"7999" not in key.split(b":", 1)[1]


def test_a_refund_is_keyed_by_its_order_and_a_batch_by_its_request():
    refund = _parsed("refund", {"orderId": "A-1"})
    assert raw_key(T, refund, "e1") == raw_key(T, refund, "e2")
    batch = _parsed(
        "batch_purchase",
        {"purchases": [{"email": f"b{i}@x.ru", "orderId": f"b{i}", "amount": 1} for i in range(2)]},
    )
    assert raw_key(T, batch, "e1") != raw_key(T, batch, "e2")


def test_tenant_of_reads_old_and_new_keys():
    assert tenant_of(T.encode()) == T
    assert tenant_of(f"{T}:abc".encode()) == T
    assert tenant_of(None) == ""


def test_a_refund_of_a_claimed_order_travels_with_its_customers_requests():
    who = {"email": "ann@example.com"}
    spend = raw_key(T, _parsed("spend_bonuses", {**who, "orderId": "3", "points": 5}), "e1")
    refund = _parsed("refund", {"orderId": "A-1"})
    owner = CustomerRef(id="c-1", email="ann@example.com")
    assert raw_key(T, refund, "e2", owner) == spend  # behind the spend the shop sent before it
    by_phone = CustomerRef(id="c-2", phone="+79991112233")
    assert raw_key(T, refund, "e2", by_phone) == raw_key(
        T, _parsed("purchase", {"phone": "+79991112233", "orderId": "9", "amount": 1}), "e3"
    )
    assert raw_key(T, refund, "e2", None) == raw_key(T, refund, "e4")  # not claimed yet
