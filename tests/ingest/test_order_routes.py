"""ingest.order_routes without Redis: the first request claiming an order keeps its route."""

from __future__ import annotations

import json

from ingest.order_routes import LocalOrderRoutes, claimed_orders
from schemas.inbound import parse_webhook


def _parsed(action: str, **payload):
    return parse_webhook(
        json.dumps({"action": action, "payload": payload}).encode(), "application/json"
    )


async def test_the_first_purchase_or_spend_of_an_order_keeps_its_route():
    routes = LocalOrderRoutes(60)
    buy = _parsed("purchase", email="a@example.com", orderId="O-1", amount="10.00")
    spend = _parsed("spend_bonuses", email="a@example.com", orderId="O-2", points=5)
    await routes.remember("t", buy, b"t:alice")
    await routes.remember("t", spend, b"t:alice")
    await routes.remember("t", buy, b"t:mallory")  # the same order named again: not moved
    assert await routes.route("t", "O-1") == b"t:alice"
    assert await routes.route("t", "O-2") == b"t:alice"
    assert await routes.route("other-tenant", "O-1") is None
    assert await routes.route("t", "O-3") is None


def test_a_refund_or_a_registration_claims_no_order():
    assert claimed_orders(_parsed("refund", orderId="O-1")) == []
    assert claimed_orders(_parsed("register_user", email="a@example.com")) == []
