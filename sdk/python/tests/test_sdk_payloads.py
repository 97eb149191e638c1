"""The bodies the client builds are Kopilka's standard format (its own parser reads them), and
the webhook-id derived from a body changes exactly when Kopilka would see a new request."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from kopilka_client import delivery_id
from kopilka_client import payloads as p

from schemas.inbound import parse_webhook


def parsed(body: dict):
    return parse_webhook(json.dumps(body).encode(), "application/json", phone_region="RU")


def test_every_action_is_read_by_kopilkas_parser():
    purchase = parsed(p.purchase(order_id="O-1", amount=Decimal("5000.50"), email="A@B.ru"))
    assert purchase.purchases[0].amount == Decimal("5000.50")
    assert purchase.purchases[0].email == "a@b.ru"
    batch = parsed(
        p.batch_purchase(
            [{"order_id": f"B-{i}", "amount": 100, "phone": "+7 999 123-45-67"} for i in range(3)]
        )
    )
    assert [x.order_id for x in batch.purchases] == ["B-0", "B-1", "B-2"]
    spend = parsed(p.spend_bonuses(order_id=7, points=100, email="a@b.ru", order_amount="1000"))
    assert (spend.request.points, spend.request.order_amount) == (100, Decimal(1000))
    refund = parsed(p.refund(order_id="O-1", amount="10", refund_id="R-1"))
    assert (refund.request.refund_id, refund.request.amount) == ("R-1", Decimal(10))
    reg = parsed(p.register_user(email="n@b.ru", name="Nina", referral_code="abcd1234"))
    assert reg.request.referrer == "ABCD1234"


def test_optional_fields_left_out_are_not_sent_and_floats_are_refused():
    assert p.refund(order_id="O-1") == {"action": "refund", "payload": {"orderId": "O-1"}}
    with pytest.raises(TypeError, match="float"):
        p.purchase(order_id="O-1", amount=49.99, email="a@b.ru")


def test_the_same_request_gets_the_same_id_and_a_new_request_a_new_one():
    buy = p.purchase(order_id="O-1", amount=5000, email="a@b.ru")
    assert delivery_id(buy) == delivery_id(dict(buy))
    # one award per order in Kopilka: a changed description is still the same order
    assert delivery_id(buy) == delivery_id(
        p.purchase(order_id="O-1", amount=5000, email="a@b.ru", description="again")
    )
    assert delivery_id(buy) != delivery_id(p.purchase(order_id="O-2", amount=5000, email="a@b.ru"))
    spend = p.spend_bonuses(order_id="O-1", points=100, email="a@b.ru")
    assert delivery_id(spend) != delivery_id(buy)  # another action on the same order
    # a spend refused for its figures may be sent again for the order with others
    assert delivery_id(spend) != delivery_id(
        p.spend_bonuses(order_id="O-1", points=50, email="a@b.ru")
    )
    # partial refunds: by refundId when given, else by amount (Kopilka's own refund identity)
    r1 = p.refund(order_id="O-1", amount="10", refund_id="R-1")
    assert delivery_id(r1) != delivery_id(p.refund(order_id="O-1", amount="10", refund_id="R-2"))
    assert delivery_id(p.refund(order_id="O-1", amount="10")) != delivery_id(
        p.refund(order_id="O-1", amount="20")
    )
    ident = delivery_id(buy)
    assert ident.startswith("kc_") and ident.isascii() and len(ident) <= 256


def test_an_unknown_action_has_no_id():
    with pytest.raises(ValueError, match="unknown action"):
        delivery_id({"action": "gift", "payload": {}})
