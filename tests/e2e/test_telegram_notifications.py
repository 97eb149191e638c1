"""Telegram notifications on the real stack: purchase -> loyalty.events -> notifications.telegram
-> outbox -> aiogram -> a fake Bot API server (aiohttp, real HTTP, the stack's custom API URL).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from urllib.parse import urlsplit

import pytest
from outbound_fakes import Answer, FakeBotApi, Receiver
from payloads import purchase


@pytest.fixture(scope="session")
async def bot_api(stack):
    fake = FakeBotApi(stack.env["KOPILKA_TELEGRAM_BOT_TOKEN"])
    await fake.start(urlsplit(stack.env["KOPILKA_TELEGRAM_API_URL"]).port)
    yield fake
    await fake.stop()


@pytest.fixture
def admin(api, stack):
    headers = {"Authorization": f"Bearer {stack.env['KOPILKA_ADMIN_TOKEN']}"}

    async def call(method: str, path: str, body=None, expect: int = 200):
        async with api.session.request(
            method, f"{api.base}/api/admin{path}", json=body, headers=headers
        ) as resp:
            data = await resp.json(content_type=None)
            assert resp.status == expect, (resp.status, data)
            return data

    return call


def new_chat() -> int:
    return random.randrange(10**9, 10**10)


async def subscribe(admin, tenant: dict, events=("bonus_awarded",)) -> int:
    chat = new_chat()
    await admin(
        "PUT",
        f"/tenants/{tenant['tenant_id']}/telegram/chats/{chat}",
        {"event_types": list(events)},
    )
    return chat


async def message_rows(db, chat: int, predicate, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await db.fetch(
            "SELECT status, attempts, last_error, text FROM telegram_messages WHERE chat_id = $1"
            " ORDER BY created_at",
            chat,
        )
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError([dict(r) for r in rows])
        await asyncio.sleep(0.1)


async def test_a_purchase_becomes_a_russian_message_in_the_tenants_chat(
    api, tenant, admin, bot_api, db
):
    chat = await subscribe(admin, tenant)
    await api.post_webhook(
        tenant["webhook_secret"], json=purchase("ORDER-123", 25000, email="tg@example.com")
    )
    [msg] = await bot_api.wait_delivered(chat, 1)
    assert msg.text == "Начислено 1 250 бонусов за заказ ORDER-123. Баланс: 1 250"
    [row] = await message_rows(db, chat, lambda r: r and r[0]["status"] == "sent")
    assert row["attempts"] == 1


async def test_a_tenant_template_and_opt_in_by_event_type(api, tenant, admin, bot_api):
    opted_in = await subscribe(admin, tenant)
    elsewhere = await subscribe(admin, tenant, events=("bonus_spent",))
    await admin(
        "PUT",
        f"/tenants/{tenant['tenant_id']}/telegram/templates/bonus_awarded",
        {"template": "+{bonuses} клиенту {customer} за {order_id}"},
    )
    bad = await admin(
        "PUT",
        f"/tenants/{tenant['tenant_id']}/telegram/templates/bonus_awarded",
        {"template": "{points.__class__}"},
        expect=422,
    )
    assert bad["field"] == "template"
    await api.post_webhook(tenant["webhook_secret"], json=purchase("T-7", 1000, email="t@e.com"))
    [msg] = await bot_api.wait_delivered(opted_in, 1)
    assert msg.text == "+50 бонусов клиенту t@e.com за T-7"
    await asyncio.sleep(1.0)
    assert bot_api.tried(elsewhere) == []


async def test_retry_after_is_waited_out_and_the_message_still_arrives(
    api, tenant, admin, bot_api, db
):
    chat = await subscribe(admin, tenant)
    bot_api.script(chat, ("retry_after", 2))
    await api.post_webhook(tenant["webhook_secret"], json=purchase("RA-1", 1000, email="ra@e.com"))
    [msg] = await bot_api.wait_delivered(chat, 1)
    first, second = bot_api.tried(chat)
    assert first.answered == 429 and second is msg
    assert second.at - first.at >= 1.9
    [row] = await message_rows(db, chat, lambda r: r and r[0]["status"] == "sent")
    assert row["attempts"] == 2


async def test_forbidden_stops_the_chat_and_is_recorded(api, tenant, admin, bot_api, db):
    chat = await subscribe(admin, tenant)
    bot_api.script(chat, "forbidden")
    await api.post_webhook(tenant["webhook_secret"], json=purchase("F-1", 1000, email="f@e.com"))
    [row] = await message_rows(db, chat, lambda r: r and r[0]["status"] == "forbidden")
    assert "blocked" in row["last_error"]
    settings = await admin("GET", f"/tenants/{tenant['tenant_id']}/telegram")
    [mine] = [c for c in settings["chats"] if c["chat_id"] == chat]
    assert mine["blocked_at"] and "blocked" in mine["blocked_reason"]

    await api.post_webhook(tenant["webhook_secret"], json=purchase("F-2", 1000, email="f@e.com"))
    await api.wait_for_customer(
        tenant["api_key"], lambda b: b["balance"]["total"] == 100, email="f@e.com"
    )
    await asyncio.sleep(1.5)
    assert len(bot_api.tried(chat)) == 1  # nothing more was sent to the blocked chat


async def test_nothing_is_lost_while_telegram_is_down(api, tenant, admin, bot_api, db):
    chat = await subscribe(admin, tenant)
    bot_api.script(chat, "down", "down", "down")
    for i in range(3):
        await api.post_webhook(
            tenant["webhook_secret"], json=purchase(f"DOWN-{i}", 1000 * (i + 1), email="d@e.com")
        )
    delivered = await bot_api.wait_delivered(chat, 3, timeout_s=60)
    assert [m.text.split(" за заказ ")[1].split(".")[0] for m in delivered] == [
        "DOWN-0",
        "DOWN-1",
        "DOWN-2",
    ]  # in order, none lost
    gaps = [b.at - a.at for a, b in itertools.pairwise(delivered)]
    assert min(gaps) >= 0.19  # one message per chat per interval (0.2 s in the test stack)
    rows = await message_rows(db, chat, lambda r: len(r) == 3)
    assert [r["status"] for r in rows] == ["sent"] * 3


async def test_a_failing_endpoint_is_disabled_after_the_limit_and_the_tenant_told(
    api, tenant, admin, bot_api, db
):
    receiver = Receiver()
    await receiver.start()
    try:
        chat = await subscribe(admin, tenant, events=("level_changed",))  # notices go to all
        path = "/always-down"
        receiver.script(path, *[Answer(500)] * 20)
        ep = await admin(
            "POST",
            f"/tenants/{tenant['tenant_id']}/endpoints",
            {"url": receiver.base + path},
            expect=201,
        )
        await api.post_webhook(tenant["webhook_secret"], json=purchase("N-1", 100, email="n@e.com"))
        await receiver.wait_for(path, 4)  # exhausted, still enabled: failing < 4 s
        await asyncio.sleep(4.5)
        await api.post_webhook(tenant["webhook_secret"], json=purchase("N-2", 100, email="n@e.com"))
        [notice] = await bot_api.wait_delivered(chat, 1)
        assert notice.text.startswith(f"Вебхук {receiver.base}{path} отключён: no successful")
        state = await db.fetchrow(
            "SELECT enabled, disabled_reason FROM webhook_endpoints WHERE id = $1",
            uuid.UUID(ep["id"]),
        )
        assert not state["enabled"] and state["disabled_reason"].startswith("no successful")
    finally:
        await receiver.stop()
