"""ingest.order_routes, in memory and in Redis: the first request naming an order keeps it."""

from __future__ import annotations

import asyncio
import json

import pytest

from ingest.order_routes import LocalOrderRoutes, RedisOrderRoutes, claimed_orders
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


@pytest.mark.connected  # a real redis-server (tests/ingest/conftest.py)
async def test_in_redis_requests_remembering_together_share_one_call_first_one_wins(redis):
    routes = RedisOrderRoutes(redis, keep_s=60, prefix="test:")
    buy = _parsed("purchase", email="a@example.com", orderId="O-1", amount="10.00")
    batch = _parsed(
        "batch_purchase",
        purchases=[
            {"email": "b@example.com", "orderId": "O-2", "amount": "5"},
            {"email": "c@example.com", "orderId": "O-3", "amount": "7"},
        ],
    )
    await routes.remember(
        "t", _parsed("purchase", email="z@example.com", orderId="O-0", amount="1"), b"x"
    )
    await redis.config_resetstat()  # the script is loaded now: one call is one EVALSHA
    await asyncio.gather(
        routes.remember("t", buy, b"t:alice"),
        routes.remember("t", batch, b"t:bob"),
        routes.remember("t", buy, b"t:mallory"),  # the same order again, in the same call
    )
    stats = await redis.info("commandstats")
    assert sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval")) == 1
    assert await routes.route("t", "O-1") == b"t:alice"
    assert await routes.route("t", "O-2") == await routes.route("t", "O-3") == b"t:bob"
    assert 55 < await redis.ttl("test:t:O-1") <= 60
    await routes.remember("t", buy, b"t:mallory")  # and later, in a call of its own
    assert await routes.route("t", "O-1") == b"t:alice"
