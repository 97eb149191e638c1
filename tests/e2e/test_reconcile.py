"""`kopilka reconcile` on the real stack: the engine's changelog against the Postgres copy."""

from __future__ import annotations

import uuid

from payloads import WAIT, action, purchase
from test_dead_letters import kopilka

from kopilka.cli.reconcile import changelog_topic, read_topic, run


async def reconcile(stack, tenant: dict, *, repair: bool = False, settle_s: float = 0):
    """What `kopilka reconcile --tenant T --json` does, in this process: (status, report)."""
    return await run(stack.settings(), tenant["tenant_id"], repair_=repair, settle_s=settle_s)


async def test_drift_is_zero_then_found_when_tampered_then_repaired(api, tenant, db, stack):
    secret = tenant["webhook_secret"]
    for order, amount, email in [
        ("RC-1", 1000, "rc1@example.com"),
        ("RC-2", 3000, "rc1@example.com"),
        ("RC-3", 2000, "rc2@example.com"),
    ]:
        status, body, _ = await api.post_webhook(secret, json=purchase(order, amount, email=email))
        assert status == 202, body
    await api.wait_for_customer(
        tenant["api_key"], lambda b: b["balance"]["total"] == 200, email="rc1@example.com"
    )
    status, body, _ = await api.post_webhook(
        secret,
        json=action("spend_bonuses", email="rc1@example.com", points=30, orderId="RC-4"),
        headers=WAIT,
    )
    assert status == 200 and body["outcomes"][0]["status"] == "applied", body
    rc1 = await api.wait_for_customer(
        tenant["api_key"], lambda b: b["balance"]["total"] == 170, email="rc1@example.com"
    )
    await api.wait_for_customer(
        tenant["api_key"], lambda b: b["balance"]["total"] == 100, email="rc2@example.com"
    )

    # what reconcile reads: str keys JSON-encoded by Faust, values our own JSON as they are
    records = await read_topic(
        stack.settings(),
        changelog_topic(stack.settings()),
        lambda k: tenant["tenant_id"].encode() in (k or b""),
    )
    keys = {k for k, _ in records}
    assert keys and all(k.startswith(b'"c|') or k.startswith(b'"o|') for k in keys), keys
    assert all(v is None or v.startswith(b"{") for _, v in records)

    status, clean = await reconcile(stack, tenant, settle_s=10)
    assert status == 0, clean
    assert (clean["customers"], clean["drifting"], clean["drift_points"]) == (2, 0, 0)
    assert clean["engine_total"] == clean["postgres_total"] == 270

    # tamper with the read model: a balance and a ledger line
    t, c = uuid.UUID(tenant["tenant_id"]), uuid.UUID(rc1["customer"]["id"])
    await db.execute(
        "UPDATE balances SET balance = balance + 77 WHERE tenant_id = $1 AND customer_id = $2", t, c
    )
    await db.execute(
        "DELETE FROM ledger_entries WHERE tenant_id = $1 AND customer_id = $2"
        " AND type = 'bonus_spent'",
        t,
        c,
    )
    status, found = await reconcile(stack, tenant)
    assert status == 1
    assert found["drift"] == [
        {
            "tenant_id": str(t),
            "customer_id": str(c),
            "engine_balance": 170,
            "postgres_balance": 247,
            "difference": 77,
            "engine_seq": found["drift"][0]["engine_seq"],
            "postgres_seq": found["drift"][0]["engine_seq"],
        }
    ]
    # the command itself: exit status 1, and a table for people
    status, out, _ = await kopilka(stack, "reconcile", "--tenant", tenant["tenant_id"])
    assert status == 1 and str(c) in out and "+77" in out

    status, repaired = await reconcile(stack, tenant, repair=True, settle_s=5)
    assert status == 0, repaired
    assert repaired["repaired"] == 1 and repaired["after_repair"]["drifting"] == 0
    customer = await api.wait_for_customer(tenant["api_key"], email="rc1@example.com")
    assert customer["balance"]["total"] == 170
    assert sorted(e["type"] for e in customer["ledger"]) == [
        "bonus_awarded",
        "bonus_awarded",
        "bonus_spent",
    ]
    lots = await db.fetchval(
        "SELECT sum(remaining) FROM lots WHERE tenant_id = $1 AND customer_id = $2", t, c
    )
    assert lots == 170
    status, again = await reconcile(stack, tenant)
    assert status == 0 and again["drifting"] == 0
