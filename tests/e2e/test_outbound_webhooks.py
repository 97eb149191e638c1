"""Signed outbound webhooks on the real stack: webhook in -> Kafka -> Faust -> Postgres outbox ->
`kopilka dispatch` -> a loopback receiver, verified with the `standardwebhooks` package.

The test stack runs a compressed retry schedule (0, 0.3, 0.3, 0.3 s: four attempts), disables an
endpoint after 4 s without a success, and allows 127.0.0.0/8 (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

import pytest
from outbound_fakes import Answer, Receiver
from payloads import purchase
from standardwebhooks.webhooks import Webhook


@pytest.fixture(scope="session")
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
def admin(api, stack):
    headers = {"Authorization": f"Bearer {stack.env['KOPILKA_ADMIN_TOKEN']}"}

    async def call(method: str, path: str, body=None, expect: int | None = 200):
        async with api.session.request(
            method, f"{api.base}/api/admin{path}", json=body, headers=headers
        ) as resp:
            data = await resp.json(content_type=None)
            if expect is not None:
                assert resp.status == expect, (resp.status, data)
            return data

    return call


@pytest.fixture
def endpoint(admin, receiver):
    async def make(tenant: dict, *answers: Answer, events=("bonus_awarded",), url=None) -> dict:
        path = f"/hooks/{uuid.uuid4().hex[:12]}"
        receiver.script(path, *answers)
        created = await admin(
            "POST",
            f"/tenants/{tenant['tenant_id']}/endpoints",
            {"url": url or receiver.base + path, "event_types": list(events)},
            expect=201,
        )
        return {**created, "path": path}

    return make


async def wait_rows(db, sql: str, *args, predicate, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await db.fetch(sql, *args)
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"never true within {timeout_s}s: {[dict(r) for r in rows]}")
        await asyncio.sleep(0.1)


def deliveries_sql() -> str:
    return (
        "SELECT id, status, attempts, round_attempts, last_status, dead_reason FROM"
        " webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at"
    )


async def attempts(db, delivery_id) -> list:
    return await db.fetch(
        "SELECT outcome, response_code, latency_ms FROM webhook_attempts WHERE delivery_id = $1"
        " ORDER BY attempted_at",
        delivery_id,
    )


async def test_a_purchase_reaches_the_shop_signed_and_verifiable(
    api, tenant, endpoint, receiver, db
):
    ep = await endpoint(tenant)
    assert ep["secret"].startswith("whsec_")
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], json=purchase("ORDER-123", 5000, email="signed@example.com")
    )
    assert status == 202, body
    [req] = await receiver.wait_for(ep["path"], 1)

    event = Webhook(ep["secret"]).verify(req.body, req.headers)  # raises unless the signature holds
    assert event["type"] == "bonus_awarded" and event["order_id"] == "ORDER-123"
    assert (event["points"], event["balance_after"], event["amount"]) == (250, 250, "5000")
    assert event["customer"]["email"] == "signed@example.com"
    assert req.headers["webhook-id"] == event["event_id"]
    assert req.headers["Content-Type"] == "application/json"

    [row] = await wait_rows(
        db,
        deliveries_sql(),
        uuid.UUID(ep["id"]),
        predicate=lambda r: r and r[0]["status"] == "succeeded",
    )
    [attempt] = await attempts(db, row["id"])
    assert attempt["outcome"] == "succeeded" and attempt["response_code"] == 200
    assert attempt["latency_ms"] > 0


async def test_events_the_endpoint_did_not_subscribe_to_are_not_sent(
    api, tenant, endpoint, receiver, db
):
    ep = await endpoint(tenant, events=("bonus_spent",))
    await api.post_webhook(tenant["webhook_secret"], json=purchase("NOPE-1", 100, email="n@e.com"))
    await api.wait_for_customer(
        tenant["api_key"], lambda b: b["balance"]["total"] == 5, email="n@e.com"
    )
    await asyncio.sleep(1.0)  # the fan-out runs beside the ledger sink
    assert receiver.received[ep["path"]] == []
    assert (
        await db.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", uuid.UUID(ep["id"])
        )
        == 0
    )


async def test_a_500_is_retried_with_the_same_id_until_it_succeeds(
    api, tenant, endpoint, receiver, db
):
    ep = await endpoint(tenant, Answer(500), Answer(500))
    await api.post_webhook(tenant["webhook_secret"], json=purchase("R-1", 1000, email="r@e.com"))
    reqs = await receiver.wait_for(ep["path"], 3)
    assert [r.answered for r in reqs] == [500, 500, 200]
    assert len({r.headers["webhook-id"] for r in reqs}) == 1
    for r in reqs:  # each attempt is signed afresh, and each verifies
        Webhook(ep["secret"]).verify(r.body, r.headers)
    [row] = await wait_rows(
        db,
        deliveries_sql(),
        uuid.UUID(ep["id"]),
        predicate=lambda r: r and r[0]["status"] == "succeeded",
    )
    assert row["attempts"] == 3
    assert [(a["outcome"], a["response_code"]) for a in await attempts(db, row["id"])] == [
        ("failed", 500),
        ("failed", 500),
        ("succeeded", 200),
    ]


async def test_429_with_retry_after_is_honoured(api, tenant, endpoint, receiver):
    ep = await endpoint(tenant, Answer(429, {"Retry-After": "2"}))
    await api.post_webhook(tenant["webhook_secret"], json=purchase("RA-1", 1000, email="ra@e.com"))
    first, second = await receiver.wait_for(ep["path"], 2)
    # the schedule alone would have retried after 0.3 s (+-20 %)
    assert second.at - first.at >= 1.9, second.at - first.at
    assert second.answered == 200


async def test_410_disables_the_endpoint_and_nothing_more_is_sent(
    api, tenant, endpoint, receiver, admin, db
):
    ep = await endpoint(tenant, Answer(410))
    await api.post_webhook(tenant["webhook_secret"], json=purchase("G-1", 1000, email="g@e.com"))
    await receiver.wait_for(ep["path"], 1)
    await wait_rows(
        db,
        "SELECT enabled, disabled_reason FROM webhook_endpoints WHERE id = $1",
        uuid.UUID(ep["id"]),
        predicate=lambda r: not r[0]["enabled"],
    )
    listed = await admin("GET", f"/tenants/{tenant['tenant_id']}/endpoints")
    [mine] = [e for e in listed["endpoints"] if e["id"] == ep["id"]]
    assert not mine["enabled"] and "410" in mine["disabled_reason"]
    [row] = await db.fetch(deliveries_sql(), uuid.UUID(ep["id"]))
    assert row["status"] == "dead" and "410" in row["dead_reason"]

    await api.post_webhook(tenant["webhook_secret"], json=purchase("G-2", 1000, email="g@e.com"))
    await api.wait_for_customer(
        tenant["api_key"], lambda b: b["balance"]["total"] == 100, email="g@e.com"
    )
    await asyncio.sleep(1.5)
    assert len(receiver.received[ep["path"]]) == 1


async def test_exhausted_deliveries_go_dead_and_come_back_by_cli_and_api(
    api, tenant, endpoint, receiver, admin, db, stack
):
    ep = await endpoint(tenant, *[Answer(503)] * 8)  # two orders x four attempts
    for order in ("D-1", "D-2"):
        await api.post_webhook(
            tenant["webhook_secret"], json=purchase(order, 1000, email="d@e.com")
        )
    rows = await wait_rows(
        db,
        deliveries_sql(),
        uuid.UUID(ep["id"]),
        predicate=lambda r: len(r) == 2 and all(x["status"] == "dead" for x in r),
    )
    assert all(r["attempts"] == 4 and "exhausted" in r["dead_reason"] for r in rows)
    assert len(receiver.received[ep["path"]]) == 8

    dead = await admin("GET", f"/tenants/{tenant['tenant_id']}/deliveries?status=dead")
    assert {d["id"] for d in dead["deliveries"]} == {str(r["id"]) for r in rows}

    # one back through the CLI ...
    cli = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "kopilka",
            "deliveries",
            "redeliver",
            "--tenant",
            tenant["tenant_id"],
            "--id",
            str(rows[0]["id"]),
        ],
        capture_output=True,
        text=True,
        env=stack.child_env(),
        timeout=60,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["redelivered"] == 1
    await receiver.wait_for(ep["path"], 9)
    # ... and the other through the admin API
    done = await admin(
        "POST",
        f"/tenants/{tenant['tenant_id']}/deliveries/redeliver",
        {"delivery_ids": [str(rows[1]["id"])]},
    )
    assert done["redelivered"] == 1
    await receiver.wait_for(ep["path"], 10)
    rows = await wait_rows(
        db,
        deliveries_sql(),
        uuid.UUID(ep["id"]),
        predicate=lambda r: all(x["status"] == "succeeded" for x in r),
    )
    assert [r["attempts"] for r in rows] == [5, 5]
    orders = {r.json()["order_id"] for r in receiver.received[ep["path"]][-2:]}
    assert orders == {"D-1", "D-2"}


async def test_private_addresses_are_refused_without_a_request(api, tenant, endpoint, db):
    eps = [
        await endpoint(tenant, url="http://169.254.169.254/latest/meta-data/"),
        await endpoint(tenant, url="http://10.255.255.1:9/hook"),
    ]
    await api.post_webhook(tenant["webhook_secret"], json=purchase("S-1", 1000, email="s@e.com"))
    for ep in eps:
        [row] = await wait_rows(
            db,
            deliveries_sql(),
            uuid.UUID(ep["id"]),
            predicate=lambda r: r and r[0]["status"] == "dead",
        )
        assert row["dead_reason"].startswith("address refused"), row["dead_reason"]
        [attempt] = await attempts(db, row["id"])
        assert attempt["outcome"] == "refused" and attempt["response_code"] is None


async def test_a_slow_endpoint_does_not_delay_another_tenant(api, make_tenant, endpoint, receiver):
    slow_shop, fast_shop = await make_tenant("Slow shop"), await make_tenant("Fast shop")
    slow = await endpoint(slow_shop, *[Answer(200, delay_s=8)] * 4)
    fast = await endpoint(fast_shop)
    for i in range(4):
        await api.post_webhook(
            slow_shop["webhook_secret"], json=purchase(f"SLOW-{i}", 1000, email="s@e.com")
        )
    await receiver.wait_for(slow["path"], 1)
    await api.post_webhook(
        fast_shop["webhook_secret"], json=purchase("FAST-1", 1000, email="f@e.com")
    )
    [fast_req] = await receiver.wait_for(fast["path"], 1, timeout_s=20)
    first_slow = receiver.received[slow["path"]][0]
    assert fast_req.at < first_slow.at + 8, "the fast shop waited for the slow one"


async def test_admin_routes_need_the_token_and_check_input(api, tenant, admin):
    async with api.session.get(
        f"{api.base}/api/admin/tenants/{tenant['tenant_id']}/endpoints"
    ) as r:
        assert r.status == 401
    bad = await admin(
        "POST", f"/tenants/{tenant['tenant_id']}/endpoints", {"url": "ftp://x"}, expect=422
    )
    assert bad["field"] == "url" and bad["reason"]
    missing = await admin("GET", f"/tenants/{uuid.uuid4()}/endpoints", expect=200)
    assert missing == {"endpoints": []}
    nobody = await admin(
        "POST", f"/tenants/{uuid.uuid4()}/endpoints", {"url": "https://shop.example/h"}, expect=404
    )
    assert nobody["field"] == "tenant_id"
