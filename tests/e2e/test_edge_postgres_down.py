"""Degraded, not down: with the stack's Postgres stopped a known shop is still accepted (it needs
only Kafka), what truly needs the database answers 503 with Retry-After, and once Postgres is
back every accepted webhook ends in the ledger exactly once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import asyncpg
import pytest
from payloads import WAIT, action, purchase

from kopilka.core import standard_webhooks


async def _awarded(db, tenant) -> list[str]:
    rows = await db.fetch(
        "SELECT order_id FROM ledger_entries WHERE tenant_id = $1 AND type = 'bonus_awarded'",
        uuid.UUID(tenant["tenant_id"]),
    )
    return [r["order_id"] for r in rows]


@pytest.mark.disruptive
async def test_postgres_down_known_shops_accepted_rest_503_nothing_lost(
    api, make_tenant, set_edge, dsn, stack
):
    if "postgres" not in {p.name for p in stack.processes}:
        pytest.skip("Postgres is external to this test session")
    shop = await make_tenant("Known shop")
    await set_edge(shop, signature_mode="optional")  # signed deliveries carry a webhook-id
    stranger = await make_tenant("Shop the ingress has not seen yet")
    status, body, _ = await api.post_webhook(
        shop["webhook_secret"], json=purchase("PG-0", 1000, email="pg@example.com"), headers=WAIT
    )
    assert status == 200, body  # the ingress now knows this shop, the worker its customer
    signing = shop["signing_secret"]

    stack.stop_process("postgres")
    down_at = time.monotonic()
    accepted, answers = ["PG-0"], []
    try:
        await asyncio.sleep(1)  # well past the ingress's tenant cache TTL (0.5 s in tests)
        for i in range(1, 31):  # a shop sending steadily for ~6 s
            order = f"PG-{i}"
            started = time.monotonic()
            status, body, _ = await api.post_webhook(
                shop["webhook_secret"],
                json=purchase(order, 1000, email=f"pg{i % 3}@example.com"),
            )
            answers.append((status, time.monotonic() - started))
            if status == 202:
                accepted.append(order)
            await asyncio.sleep(0.2)
        assert {s for s, _ in answers} == {202}, answers
        assert max(t for _, t in answers) < 2, "a known shop must not wait for the database"

        # only what needs the database: a shop not cached, the read API, a referrer check
        status, body, headers = await api.post_webhook(
            stranger["webhook_secret"], json=purchase("X-1", 1000, email="x@example.com")
        )
        assert (status, body["error"]) == (503, "unavailable"), body
        assert int(headers["Retry-After"]) > 0
        status, body = await api.customer(shop["api_key"], email="pg1@example.com")
        assert status == 503, body
        referral = json.dumps(
            action("register_user", email="ref@example.com", referrerEmail="pg@example.com")
        ).encode()
        signed = standard_webhooks.headers(signing, "msg_pg_ref", int(time.time()), referral)
        status, body, headers = await api.post_webhook(
            shop["webhook_secret"],
            data=referral,
            headers={**signed, "Content-Type": "application/json"},
        )
        assert (status, body["error"]) == (503, "unavailable"), body
        assert int(headers["Retry-After"]) > 0
    finally:
        stack.start_postgres()
    print(f"\npostgres down for {time.monotonic() - down_at:.1f} s")

    # the shop retries the referral with the same webhook-id: it goes through, not "duplicate"
    deadline = time.monotonic() + 60
    while True:
        signed = standard_webhooks.headers(signing, "msg_pg_ref", int(time.time()), referral)
        status, body, _ = await api.post_webhook(
            shop["webhook_secret"],
            data=referral,
            headers={**signed, "Content-Type": "application/json"},
        )
        if status != 503 or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert status == 202, body

    conn = None
    while conn is None:
        try:
            conn = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError):
            assert time.monotonic() < deadline, "Postgres did not come back"
            await asyncio.sleep(0.5)
    try:
        deadline = time.monotonic() + 120
        while True:
            awarded = await _awarded(conn, shop)
            if set(accepted) <= set(awarded) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # anything doubled would show by now
        awarded = await _awarded(conn, shop)
    finally:
        await conn.close()
    lost = sorted(set(accepted) - set(awarded))
    doubled = len(awarded) - len(set(awarded))
    print(f"accepted {len(accepted)} / lost {len(lost)} / doubled {doubled}")
    assert (lost, doubled) == ([], 0)
    assert sorted(awarded) == sorted(accepted)
    status, body = await api.customer(shop["api_key"], email="ref@example.com")
    assert status == 200, body  # the referral registered after its retry
