"""The dispatcher killed -9 mid-delivery, several times, while a shop buys steadily.

The shop has an outbound endpoint and four Telegram chats (each for a few event types, so that
per-chat pacing keeps up), both served by loopback stand-ins (tests/faults/outside.py) that
answer after a short delay. `kopilka dispatch` is killed -9 while a webhook delivery and a
Telegram send are in flight, and restarted at once, as `make run`'s supervisor would.

Must hold: every event reaches the endpoint at least once, all deliveries of one event carry one
`webhook-id`; no Telegram message is posted twice; and the ledger's lost / doubled / drift are 0
(the harness's checker). The fault table gets the ledger line and an outbound line.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import asyncpg
import pytest
from checker import Checker
from harness import RULES, TABLE, assert_clean, run_scenario
from outbound_check import check_outbound
from outside import BotApi, Endpoint

from kopilka.directory import subscriptions
from schemas.tenant_rules import TenantRules

pytestmark = [pytest.mark.disruptive]

KILLS = 3
BOT_TOKEN = "654321:kopilka-faults-bot"
# chat -> its event types; bonus_awarded (the commonest) goes to the endpoint only
CHAT_TYPES = [
    ["customer_registered"],
    ["bonus_spent", "spend_rejected"],
    ["bonus_reversed", "bonus_returned"],
    ["referral_awarded", "level_changed"],
]


def _dispatch_env(bot_port: int) -> dict[str, str]:
    return {
        "KOPILKA_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "KOPILKA_WEBHOOK_TIMEOUT_S": "5",  # a cut-off delivery's lease: 5 + 30 s
        "KOPILKA_WEBHOOK_RETRY_SCHEDULE_S": "0,1,2,5,10,30",
        "KOPILKA_WEBHOOK_ENDPOINT_CONCURRENCY": "8",
        "KOPILKA_DISPATCH_POLL_INTERVAL_S": "0.5",
        "KOPILKA_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "KOPILKA_TELEGRAM_API_URL": f"http://127.0.0.1:{bot_port}",
        "KOPILKA_TELEGRAM_CHAT_INTERVAL_S": "0.05",
        "KOPILKA_TELEGRAM_BOT_RATE": "100",
        "KOPILKA_TELEGRAM_LEASE_S": "20",
    }


async def _in_flight(endpoint: Endpoint, bot: BotApi, timeout_s: float = 20.0) -> str:
    """Wait until a delivery and a Telegram send are both being served (or, after `timeout_s`,
    either); say what was in flight."""
    deadline = time.monotonic() + timeout_s
    while not (endpoint.in_flight and bot.in_flight):
        if time.monotonic() > deadline and (endpoint.in_flight or bot.in_flight):
            break
        assert time.monotonic() < deadline + 60, "nothing in flight: the dispatcher sends nothing"
        await asyncio.sleep(0.01)
    return f"{endpoint.in_flight} deliveries and {bot.in_flight} Telegram sends in flight"


@pytest.mark.timeout(600)
async def test_dispatcher_killed_mid_delivery(fault_stack):
    fs = fault_stack
    rng = random.Random(8)
    endpoint, bot = Endpoint(delay_s=0.15), BotApi(BOT_TOKEN, delay_s=0.1)
    await endpoint.start()
    env = _dispatch_env(await bot.start())
    chats = {7_000_000_000 + uuid.uuid4().int % 10**9: types for types in CHAT_TYPES}
    made: dict = {}
    fault_end: list[float] = []  # when the last restarted dispatcher was ready

    async def start_dispatch() -> None:
        await asyncio.to_thread(fs.stack.start_dispatch, None, env)

    async def prepare(tenant: dict) -> None:
        made.update(tenant)
        conn = await asyncpg.connect(fs.dsn)
        try:
            await subscriptions.add_endpoint(conn, tenant["tenant_id"], endpoint.url, None)
            for chat_id, types in chats.items():
                await subscriptions.add_chat(conn, tenant["tenant_id"], chat_id, types)
                for kind in types:  # the event id first: which message is which
                    await subscriptions.set_template(
                        conn, tenant["tenant_id"], kind, "{event_id} {type} {customer}"
                    )
        finally:
            await conn.close()
        await start_dispatch()

    async def fault(fs, t):
        await asyncio.sleep(4.0)
        t.start = time.monotonic()
        for i in range(KILLS):
            what = await _in_flight(endpoint, bot)
            await fs.stop("dispatch", kill=True)
            t.note(f"dispatch killed -9 ({i + 1}/{KILLS}): {what}")
            await start_dispatch()
            t.note("dispatch ready")
            await asyncio.sleep(rng.uniform(1.0, 3.0))
        t.end = time.monotonic()
        fault_end.append(t.end)

    name = f"dispatcher kill -9 x{KILLS}"
    try:
        report = await run_scenario(fs, name, fault, rate=6, prepare=prepare)
        checker = Checker(
            dsn=fs.dsn,
            bootstrap=fs.bootstrap,
            base_url=fs.base_url,
            tenant=made,
            rules=TenantRules.model_validate(RULES),
        )
        outbound = await check_outbound(checker, fs.dsn, made["tenant_id"], endpoint, bot, chats)
    finally:
        for proc in fs.processes("dispatch"):
            await fs.stop(proc.name)
        await endpoint.stop()
        await bot.stop()
    line = outbound.line(name, fault_end[0] if fault_end else None)
    TABLE.append(line)
    print(line)
    print(outbound)
    assert_clean(report)
    assert outbound.clean(), outbound
    assert outbound.events > 0 and outbound.messages > 0, "the scenario sent nothing out"
