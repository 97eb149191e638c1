"""Webhook -> Kafka -> Faust -> Postgres -> read API, on the real broker and database."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlencode

from payloads import FORM, TILDA_FORM, purchase


async def test_standard_purchase_shows_up_with_its_balance(api, tenant):
    email = f"buyer-{uuid.uuid4().hex[:8]}@example.com"
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], json=purchase("ORDER-1", 5000, email=email.upper())
    )
    assert status == 202, body
    uuid.UUID(body["event_id"])

    customer = await api.wait_for_customer(
        tenant["api_key"], lambda b: b["balance"]["total"] == 250, email=email
    )
    assert customer["customer"]["email"] == email
    assert customer["level"]["lifetime_spend"] == "5000"
    [entry] = customer["ledger"]
    assert entry["type"] == "bonus_awarded"
    assert (entry["order_id"], entry["delta"], entry["amount"]) == ("ORDER-1", 250, "5000")
    assert entry["expires_at"] > entry["occurred_at"]


async def test_tilda_form_order_shows_up_with_its_balance(api, tenant):
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], data=urlencode(TILDA_FORM), headers=FORM
    )
    assert status == 202, body
    customer = await api.wait_for_customer(
        tenant["api_key"], lambda b: b["balance"]["total"] == 1222, phone="+79991112233"
    )
    assert customer["customer"]["email"] == "ivan.petrov@example.com"
    assert customer["customer"]["phone"] == "+79991112233"
    assert customer["ledger"][0]["order_id"] == "1557604691"


async def test_tilda_connection_check_answers_200_and_publishes_nothing(api, tenant, db):
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], data="test=test", headers=FORM
    )
    assert status == 200, body
    await asyncio.sleep(1)
    audit = await db.fetchval(
        "SELECT count(*) FROM webhook_audit WHERE tenant_id = $1", uuid.UUID(tenant["tenant_id"])
    )
    assert audit == 0


async def test_same_order_three_times_awards_once(api, tenant, db):
    email = "thrice@example.com"
    for _ in range(3):
        status, body, _ = await api.post_webhook(
            tenant["webhook_secret"], json=purchase("DUP-1", 1000, email=email)
        )
        assert status == 202, body
    # a later order proves the three deliveries were all processed before we look
    await api.post_webhook(tenant["webhook_secret"], json=purchase("AFTER-1", 2000, email=email))
    customer = await api.wait_for_customer(
        tenant["api_key"], lambda b: len(b["ledger"]) >= 2, email=email
    )
    assert customer["balance"]["total"] == 50 + 100
    assert sorted(e["order_id"] for e in customer["ledger"]) == ["AFTER-1", "DUP-1"]
    accepted = await db.fetchval(
        "SELECT count(*) FROM webhook_audit WHERE tenant_id = $1 AND status = 'accepted'",
        uuid.UUID(tenant["tenant_id"]),
    )
    assert accepted == 4


async def test_tilda_and_standard_with_phone_written_two_ways_are_one_customer(api, tenant):
    form = {
        **TILDA_FORM,
        "Email": "",
        "Phone": "+7 (999) 555-66-77",
        "payment[orderid]": "T-1",
        "payment[amount]": "1000",
    }
    status, _, _ = await api.post_webhook(
        tenant["webhook_secret"], data=urlencode(form), headers=FORM
    )
    assert status == 202
    status, _, _ = await api.post_webhook(
        tenant["webhook_secret"], json=purchase("S-1", "3000", phone="8 999 555 66 77")
    )
    assert status == 202
    customer = await api.wait_for_customer(
        tenant["api_key"], lambda b: len(b["ledger"]) == 2, phone="89995556677"
    )
    assert customer["balance"]["total"] == 50 + 150
    assert customer["level"]["lifetime_spend"] == "4000"


async def test_bad_requests_get_the_right_error_and_leave_the_ledger_untouched(
    api, tenant, db, stack
):
    secret = tenant["webhook_secret"]
    json_headers = {"Content-Type": "application/json"}
    too_big = stack.settings().max_body_bytes + 1
    cases = [
        ("malformed JSON", dict(data=b'{"action": "purchase", ', headers=json_headers), 400, None),
        (
            "missing amount",
            dict(
                json={"action": "purchase", "payload": {"email": "a@example.com", "orderId": "X1"}}
            ),
            422,
            "payload.amount",
        ),
        (
            "negative amount",
            dict(json=purchase("X2", -5, email="a@example.com")),
            422,
            "payload.amount",
        ),
        ("unknown action", dict(json={"action": "teleport", "payload": {}}), 422, "action"),
        (
            "wrong content type",
            dict(data=b"<xml/>", headers={"Content-Type": "application/xml"}),
            415,
            None,
        ),
        ("oversized body", dict(data=b"x" * too_big, headers=json_headers), 413, None),
    ]
    for name, kwargs, expected, field in cases:
        status, body, _ = await api.post_webhook(secret, **kwargs)
        assert status == expected, (name, status, body)
        assert body["error"] and body["reason"], (name, body)
        if field:
            assert body["field"] == field, (name, body)

    status, body, _ = await api.post_webhook(
        "whk_not-a-real-secret", json=purchase("X3", 100, email="a@example.com")
    )
    assert status == 404 and body["error"] == "unknown_webhook"

    tenant_id = uuid.UUID(tenant["tenant_id"])
    for _ in range(100):  # the refusals reach the audit log through Kafka
        rejected = await db.fetch(
            "SELECT http_status, code FROM webhook_audit WHERE tenant_id = $1", tenant_id
        )
        if len(rejected) == len(cases):
            break
        await asyncio.sleep(0.2)
    assert sorted(r["http_status"] for r in rejected) == sorted(c[2] for c in cases)
    assert {r["code"] for r in rejected} >= {"malformed_json", "body_too_large"}
    assert (
        await db.fetchval("SELECT count(*) FROM ledger_entries WHERE tenant_id = $1", tenant_id)
        == 0
    )
    assert await db.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant_id) == 0


async def test_one_tenants_key_cannot_read_another_tenants_customer(api, make_tenant):
    shop_a, shop_b = await make_tenant("Shop A"), await make_tenant("Shop B")
    email = "shared-name@example.com"
    status, _, _ = await api.post_webhook(
        shop_a["webhook_secret"], json=purchase("A-1", 1000, email=email)
    )
    assert status == 202
    await api.wait_for_customer(
        shop_a["api_key"], lambda b: b["balance"]["total"] == 50, email=email
    )

    status, body = await api.customer(shop_b["api_key"], email=email)
    assert status == 404, body
    status, body = await api.customer("kpk_wrong", email=email)
    assert status == 401, body


async def test_health_and_readiness(api):
    async with api.session.get(f"{api.base}/healthz") as resp:
        assert resp.status == 200
    async with api.session.get(f"{api.base}/readyz") as resp:
        body = await resp.json()
        assert resp.status == 200, body
        assert body["checks"] == {"postgres": "ok", "kafka": "ok"}
