"""Settlement on the real stack: an order past its refund window shrinks, refunds are refused."""

from __future__ import annotations

import asyncio
import time
import uuid

from payloads import WAIT, action, purchase


async def test_an_order_past_its_refund_window_is_settled_and_refuses_refunds(api, make_tenant, db):
    shop = await make_tenant()
    secret, email = shop["webhook_secret"], f"s-{uuid.uuid4().hex[:8]}@example.com"
    status, body, _ = await api.post_webhook(
        secret, json=purchase("ST-1", 1000, email=email), headers=WAIT
    )
    assert status == 200, body
    tenant = uuid.UUID(shop["tenant_id"])
    # as if it had been bought 100 days ago: past the default 90-day refund window
    await db.execute(
        "UPDATE order_claims SET claimed_at = now() - interval '100 days'"
        " WHERE tenant_id = $1 AND order_id = 'ST-1'",
        tenant,
    )
    deadline = time.monotonic() + 30  # the test stack sweeps every 2 s
    while time.monotonic() < deadline:
        settled = await db.fetchval(
            "SELECT settled_at FROM order_claims WHERE tenant_id = $1 AND order_id = 'ST-1'",
            tenant,
        )
        if settled is not None:
            break
        await asyncio.sleep(0.5)
    assert settled is not None
    await asyncio.sleep(1)  # the settle command reaches the ledger right after the mark

    status, body, _ = await api.post_webhook(
        secret, json=action("refund", orderId="ST-1"), headers=WAIT
    )
    assert status == 200, body
    [outcome] = body["outcomes"]
    assert outcome["status"] == "rejected" and "refund window" in outcome["reason"], outcome
    status, body, _ = await api.post_webhook(  # a very late retry of the purchase
        secret, json=purchase("ST-1", 1000, email=email), headers=WAIT
    )
    assert body["outcomes"][0]["status"] == "duplicate", body
    customer = await api.wait_for_customer(shop["api_key"], email=email)
    assert customer["balance"]["total"] == 50
