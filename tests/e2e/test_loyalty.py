"""The loyalty engine end to end: HTTP in, real Kafka and Faust and Postgres, read API out."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from payloads import WAIT, action, purchase


def events_of(body: dict, index: int = 0) -> list[dict]:
    [outcome] = [o for o in body["outcomes"] if o["index"] == index]
    return outcome["events"]


def mail() -> str:
    return f"c-{uuid.uuid4().hex[:10]}@example.com"


async def test_level_up_across_two_purchases(api, make_tenant):
    shop = await make_tenant(
        levels=[{"name": "silver", "min_lifetime_spend": "10000", "bonus_percent": "2"}]
    )
    email = mail()
    status, body, _ = await api.post_webhook(
        shop["webhook_secret"], json=purchase("L-1", 9000, email=email), headers=WAIT
    )
    assert status == 200, body
    assert [(e["type"], e["points"]) for e in events_of(body)] == [("bonus_awarded", 450)]

    status, body, _ = await api.post_webhook(
        shop["webhook_secret"], json=purchase("L-2", 2000, email=email), headers=WAIT
    )
    assert status == 200, body
    awarded, changed = events_of(body)
    assert (awarded["points"], awarded["percent"]) == (100, "5")  # the level held before
    assert (changed["type"], changed["level"], changed["direction"]) == (
        "level_changed",
        "silver",
        "up",
    )
    status, body, _ = await api.post_webhook(
        shop["webhook_secret"], json=purchase("L-3", 1000, email=email), headers=WAIT
    )
    assert (events_of(body)[0]["points"], events_of(body)[0]["percent"]) == (70, "7")

    customer = await api.wait_for_customer(
        shop["api_key"], lambda b: b["balance"]["total"] == 620, email=email
    )
    assert customer["level"]["name"] == "silver" and customer["level"]["percent"] == "7"
    assert customer["level"]["next"] is None


async def test_referral_chain_awards_the_referrer_and_refuses_bad_referrals(api, make_tenant):
    shop = await make_tenant(referral_percent="3")
    secret = shop["webhook_secret"]
    alice, bob, carol = mail(), mail(), mail()

    status, body, _ = await api.post_webhook(
        secret, json=action("register_user", email=alice, name="Alice"), headers=WAIT
    )
    assert status == 200, body
    [registered] = events_of(body)
    code = registered["referral_code"]
    assert registered["type"] == "customer_registered" and len(code) == 8

    status, body, _ = await api.post_webhook(
        secret, json=action("register_user", email=bob, referralCode=code.lower()), headers=WAIT
    )
    assert events_of(body)[0]["referrer_id"] == registered["customer"]["id"]

    # Bob buys twice: Alice earns 3 % of his first purchase only (the default mode)
    await api.post_webhook(secret, json=purchase("R-1", 1000, email=bob), headers=WAIT)
    await api.post_webhook(secret, json=purchase("R-2", 5000, email=bob), headers=WAIT)
    referrer = await api.wait_for_customer(
        shop["api_key"], lambda b: b["balance"]["total"] == 30, email=alice
    )
    assert referrer["ledger"][0]["type"] == "referral_awarded"
    assert "referral" in referrer["ledger"][0]["reason"]

    refusals = {
        "unknown_referrer": action("register_user", email=carol, referralCode="ZZZZZZZZ"),
        "self_referral": action("register_user", email=carol, referrerEmail=carol),
        "referral_cycle": action("register_user", email=alice, referrerEmail=bob),
    }
    for code_expected, body_sent in refusals.items():  # answered at once, before Kafka
        status, body, _ = await api.post_webhook(secret, json=body_sent)
        assert (status, body["error"], body["field"]) == (422, code_expected, "referrer"), body


async def test_spend_refused_then_accepted_after_a_purchase_with_prefer_wait(api, make_tenant):
    shop = await make_tenant(max_spend_percent="50")
    secret, phone = shop["webhook_secret"], "+7 999 555-12-34"
    spend = action("spend_bonuses", phone=phone, points=200, orderId="S-1", orderAmount=1000)

    started = time.monotonic()
    status, body, _ = await api.post_webhook(secret, json=spend, headers=WAIT)
    assert status == 200, body
    assert time.monotonic() - started < 5
    [rejected] = events_of(body)
    assert (rejected["type"], rejected["reason"]) == ("spend_rejected", "insufficient_balance")

    await api.post_webhook(secret, json=purchase("P-1", 6000, phone=phone), headers=WAIT)
    status, body, _ = await api.post_webhook(secret, json=spend, headers=WAIT)
    [spent] = events_of(body)
    assert (spent["type"], spent["points"], spent["balance_after"]) == ("bonus_spent", 200, 100)

    over = action("spend_bonuses", phone=phone, points=60, orderId="S-2", orderAmount=100)
    status, body, _ = await api.post_webhook(secret, json=over, headers=WAIT)
    assert events_of(body)[0]["reason"] == "over_max_percent"

    # without the header the answer is the usual 202
    status, body, _ = await api.post_webhook(secret, json={**over, "payload": {**over["payload"]}})
    assert status == 202, body


async def test_partial_refund_reverses_in_proportion_and_returns_spent_points(api, make_tenant):
    shop = await make_tenant()
    secret, email = shop["webhook_secret"], mail()
    await api.post_webhook(secret, json=purchase("F-1", 3000, email=email), headers=WAIT)
    spend = action("spend_bonuses", email=email, points=100, orderId="F-2", orderAmount=500)
    await api.post_webhook(secret, json=spend, headers=WAIT)

    status, body, _ = await api.post_webhook(
        secret, json=action("refund", orderId="F-1", amount="1000"), headers=WAIT
    )
    assert status == 200, body
    [reversed_] = events_of(body)
    assert (reversed_["type"], reversed_["points"], reversed_["balance_after"]) == (
        "bonus_reversed",
        50,
        0,
    )
    status, body, _ = await api.post_webhook(
        secret, json=action("refund", orderId="F-2"), headers=WAIT
    )
    [returned] = events_of(body)
    assert (returned["type"], returned["points"], returned["balance_after"]) == (
        "bonus_returned",
        100,
        100,
    )
    status, body, _ = await api.post_webhook(
        secret, json=action("refund", orderId="NO-SUCH"), headers=WAIT
    )
    assert body["outcomes"][0]["reason"].startswith("unknown_order")

    customer = await api.wait_for_customer(
        shop["api_key"], lambda b: b["balance"]["total"] == 100, email=email
    )
    assert customer["level"]["lifetime_spend"] == "2000"
    types = [entry["type"] for entry in customer["ledger"]]
    assert types == ["bonus_returned", "bonus_reversed", "bonus_spent", "bonus_awarded"]


async def test_expiry_sweep_expires_lots_and_the_balance_drops(api, make_tenant, db):
    shop = await make_tenant(bonus_ttl_days=1)
    email = mail()
    await api.post_webhook(
        shop["webhook_secret"], json=purchase("E-1", 2000, email=email), headers=WAIT
    )
    await api.wait_for_customer(
        shop["api_key"], lambda b: b["balance"]["expiring_30d"] == 100, email=email
    )
    as_of = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    status, body = await api.admin("POST", "expiry-sweeps", {"as_of": as_of})
    assert status == 202 and body["customers"] >= 1, body
    customer = await api.wait_for_customer(
        shop["api_key"],
        lambda b: b["ledger"] and b["ledger"][0]["type"] == "bonus_expired",
        email=email,
    )
    assert customer["ledger"][0]["delta"] == -100
    remaining = await db.fetchval(
        "SELECT sum(remaining) FROM lots WHERE tenant_id = $1", uuid.UUID(shop["tenant_id"])
    )
    assert remaining == 0


async def test_held_points_are_pending_in_the_read_api(api, make_tenant):
    shop = await make_tenant(hold_days=14)
    email = mail()
    await api.post_webhook(shop["webhook_secret"], json=purchase("H-1", 2000, email=email))
    customer = await api.wait_for_customer(
        shop["api_key"], lambda b: b["balance"]["total"] == 100, email=email
    )
    assert (customer["balance"]["active"], customer["balance"]["pending"]) == (0, 100)


async def test_batch_of_ten_thousand_purchases_is_fully_reflected_in_postgres(api, make_tenant, db):
    shop = await make_tenant()
    items = [
        {"email": f"batch-{i % 2000}@example.com", "amount": 100 + i % 900, "orderId": f"B-{i}"}
        for i in range(10_000)
    ]
    items.append({"email": "bad@example.com", "amount": 5})  # no orderId: refused alone
    started = time.monotonic()
    status, body, _ = await api.post_webhook(
        shop["webhook_secret"], json=action("batch_purchase", purchases=items)
    )
    assert status == 202, body
    assert len(body["accepted"]) == 10_000
    assert [(r["index"], r["error"]) for r in body["rejected"]] == [(10_000, "missing_field")]

    expected = sum((100 + i % 900) * 5 // 100 for i in range(10_000))
    tenant_id = uuid.UUID(shop["tenant_id"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        count, points = await db.fetchrow(
            "SELECT count(*), COALESCE(sum(points), 0) FROM ledger_entries"
            " WHERE tenant_id = $1 AND type = 'bonus_awarded'",
            tenant_id,
        )
        if count == 10_000:
            break
        await asyncio.sleep(0.5)
    print(f"10,000-item batch reflected in Postgres {time.monotonic() - started:.1f}s after POST")
    assert (count, points) == (10_000, expected)
    balances = await db.fetchrow(
        "SELECT count(*), sum(balance) FROM balances WHERE tenant_id = $1", tenant_id
    )
    deadline = time.monotonic() + 30
    while tuple(balances) != (2000, expected) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        balances = await db.fetchrow(
            "SELECT count(*), sum(balance) FROM balances WHERE tenant_id = $1", tenant_id
        )
    assert tuple(balances) == (2000, expected)


async def test_identities_link_and_an_order_cannot_change_customer(api, make_tenant):
    shop = await make_tenant()
    secret, email, phone = shop["webhook_secret"], mail(), "+7 999 700-00-01"
    await api.post_webhook(secret, json=purchase("I-1", 1000, email=email), headers=WAIT)
    await api.post_webhook(
        secret, json=purchase("I-2", 1000, email=email, phone=phone), headers=WAIT
    )
    await api.post_webhook(secret, json=purchase("I-3", 1000, phone="89997000001"), headers=WAIT)
    by_phone = await api.wait_for_customer(
        shop["api_key"], lambda b: b["balance"]["total"] == 150, phone=phone
    )
    assert by_phone["customer"]["email"] == email

    _, body, _ = await api.post_webhook(
        secret, json=purchase("I-1", 1000, email=mail()), headers=WAIT
    )
    [outcome] = body["outcomes"]
    assert outcome["status"] == "rejected"
    assert outcome["reason"].startswith("order_of_another_customer")


async def test_rule_changes_apply_to_what_is_processed_after_them(api, make_tenant):
    shop = await make_tenant()
    email = mail()
    await api.post_webhook(
        shop["webhook_secret"], json=purchase("U-1", 1000, email=email), headers=WAIT
    )
    status, body = await api.admin(
        "PATCH", f"tenants/{shop['tenant_id']}/rules", {"base_percent": "10"}
    )
    assert status == 200 and body["rules_revision"] == 2, body
    assert body["rules"]["base_percent"] == "10"
    deadline = time.monotonic() + 10
    points = None
    n = 0
    while time.monotonic() < deadline:  # the change reaches the workers within moments
        n += 1
        status, body, _ = await api.post_webhook(
            shop["webhook_secret"], json=purchase(f"U-2-{n}", 1000, email=email), headers=WAIT
        )
        points = events_of(body)[0]["points"]
        if points == 100:
            break
        await asyncio.sleep(0.2)
    assert points == 100
    status, body = await api.admin(
        "PATCH", f"tenants/{shop['tenant_id']}/rules", {"base_percent": "101"}
    )
    assert (status, body["field"]) == (422, "base_percent"), body
    status, body = await api.admin("PATCH", f"tenants/{shop['tenant_id']}/rules", {"bogus": 1})
    assert (status, body["field"]) == (422, "bogus"), body


async def test_admin_api_needs_the_admin_token(api):
    async with api.session.get(f"{api.base}/api/admin/tenants/{uuid.uuid4()}") as resp:
        assert resp.status == 401
    status, body = await api.admin("GET", f"tenants/{uuid.uuid4()}")
    assert status == 404, body


async def test_email_and_phone_of_two_customers_go_to_the_older_one_and_are_recorded(
    api, make_tenant, db
):
    shop = await make_tenant()
    secret, email, phone = shop["webhook_secret"], mail(), "+7 999 700-00-02"
    await api.post_webhook(secret, json=purchase("C-1", 1000, email=email), headers=WAIT)
    await api.post_webhook(secret, json=purchase("C-2", 2000, phone=phone), headers=WAIT)
    _, body, _ = await api.post_webhook(
        secret, json=purchase("C-3", 4000, email=email, phone=phone), headers=WAIT
    )
    [awarded] = events_of(body)
    older = await api.wait_for_customer(shop["api_key"], email=email)
    assert awarded["customer"]["id"] == older["customer"]["id"]
    conflicts = await db.fetch(
        "SELECT chosen_id, other_id FROM identity_conflicts WHERE tenant_id = $1",
        uuid.UUID(shop["tenant_id"]),
    )
    assert [str(c["chosen_id"]) for c in conflicts] == [older["customer"]["id"]]
