"""Fenced outbox claims, two dispatchers against the real Postgres.

The stack's own dispatcher is paused (SIGSTOP) for these tests, so the dispatchers under test are
the only ones claiming; it is resumed afterwards and must pick up again by itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import aiohttp
import pytest
from outbound_fakes import Answer, FakeBotApi, Receiver

from kopilka.core import db as kdb
from kopilka.devstack import devservices
from kopilka.directory import subscriptions
from sinks.telegram_notifier import _SENDER_LOCK, TelegramSender, make_bot
from sinks.webhook_delivery import Attempt, WebhookDispatcher

# the first test of a session also waits for the whole stack to start (slow on a busy box)
pytestmark = pytest.mark.timeout(420)

_LOCK_HOLDER = """
SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
   AND (classid::bigint << 32 | objid::bigint) = $1
"""


@pytest.fixture
async def pool(dsn):
    p = await kdb.create_pool(dsn, min_size=1, max_size=8)
    yield p
    await p.close()


@pytest.fixture
def stack_dispatcher_paused(stack):
    pgid = stack.process("dispatch").proc.pid
    os.killpg(pgid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pgid, signal.SIGCONT)


async def lock_holder(pool) -> int | None:
    return await pool.fetchval(_LOCK_HOLDER, _SENDER_LOCK)


async def eventually(check, timeout_s: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s}s")


class Recording(WebhookDispatcher):
    """A dispatcher that remembers whether each outcome it recorded was accepted."""

    def __init__(self, *args, lease_s: float) -> None:
        super().__init__(*args)
        self.lease_s = lease_s
        self.recorded: list[bool] = []

    async def record(self, row, a: Attempt) -> bool:
        accepted = await super().record(row, a)
        self.recorded.append(accepted)
        return accepted


async def test_a_stolen_webhook_lease_refuses_the_old_owners_outcome(
    pool, make_tenant, stack, stack_dispatcher_paused
):
    receiver = Receiver()
    await receiver.start()
    settings = stack.settings()
    a = Recording(pool, settings, lease_s=1.0)
    b = Recording(pool, settings, lease_s=10.0)
    try:
        tenant = await make_tenant()
        # the first request hangs past A's lease; the second (B's) is answered at once
        url = receiver.script("/slow", Answer(200, delay_s=3.0), Answer(200))
        ep = await subscriptions.add_endpoint(pool, tenant["tenant_id"], url, None)
        delivery = uuid.uuid4()
        await pool.execute(
            "INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type,"
            " payload) VALUES ($1, $2, $3, $4, 'bonus_awarded', '{\"n\": 1}')",
            delivery,
            uuid.UUID(ep["id"]),
            uuid.UUID(tenant["tenant_id"]),
            uuid.uuid4(),
        )
        async with aiohttp.ClientSession() as a.session, aiohttp.ClientSession() as b.session:
            [row_a] = await _claimed(a, delivery)
            in_flight = asyncio.create_task(a.deliver(row_a))
            await receiver.wait_for("/slow", 1)
            await asyncio.sleep(1.2)  # A's lease runs out while its request hangs
            [row_b] = await eventually(
                lambda: _claimed(b, delivery), 10, "B claiming the expired lease"
            )
            assert row_b["lease_token"] != row_a["lease_token"]
            await b.deliver(row_b)
            await asyncio.wait_for(in_flight, 10)
        assert b.recorded == [True]
        assert a.recorded == [False]  # the old owner's outcome was refused
        assert len(receiver.received["/slow"]) == 2  # at least once: both requests were made
        row = await pool.fetchrow(
            "SELECT status, attempts, lease_token FROM webhook_deliveries WHERE id = $1",
            delivery,
        )
        assert (row["status"], row["attempts"], row["lease_token"]) == ("succeeded", 1, None)
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1", delivery
            )
            == 1
        )
        # and a record() with a token nobody holds any more changes nothing
        late = Attempt("failed", 500, 1.0, datetime.now(UTC), "HTTP 500")
        assert await a.record(row_a, late) is False
        assert (
            await pool.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1", delivery)
            == "succeeded"
        )
    finally:
        await receiver.stop()


async def _claimed(dispatcher: WebhookDispatcher, delivery: uuid.UUID):
    rows = [r for rs in (await dispatcher.claim()).values() for r in rs]
    dispatcher.busy.clear()
    return [r for r in rows if r["id"] == delivery]


class OneLock(TelegramSender):
    """A sender that, once it lost its lock, does not try again: someone else must take over."""

    lost = False
    _had_it = False

    async def _lock(self, stopping):
        if self._had_it:
            self.lost = True  # _lead returned: it noticed
            await stopping.wait()
            return None
        self._had_it = True
        return await super()._lock(stopping)


class SlowBotApi(FakeBotApi):
    """The fake Bot API, answering each message after a while (so sends are in flight)."""

    def __init__(self, token: str, delay_s: float) -> None:
        super().__init__(token)
        self.delay_s = delay_s

    async def handle(self, request):
        await asyncio.sleep(self.delay_s)
        return await super().handle(request)


async def test_a_sender_that_lost_its_lock_stops_and_no_message_goes_twice(
    pool, make_tenant, stack, stack_dispatcher_paused
):
    token = stack.env["KOPILKA_TELEGRAM_BOT_TOKEN"]
    fakes = {name: SlowBotApi(token, delay_s=0.3) for name in ("a", "b")}
    senders, stops, tasks = {}, {}, {}
    for name, fake in fakes.items():
        port = devservices.free_port()
        await fake.start(port)
        settings = stack.settings().model_copy(
            update={
                "telegram_api_url": f"http://127.0.0.1:{port}",
                "telegram_chat_interval_s": 0.0,
                "telegram_bot_rate": 1000.0,
                "telegram_lease_s": 30.0,
                "dispatch_poll_interval_s": 0.2,
            }
        )
        senders[name] = OneLock(pool, settings, make_bot(settings))
        stops[name] = asyncio.Event()
    try:
        # the paused stack dispatcher holds the sender lock: end its session, as a restart would
        stale = await eventually(lambda: lock_holder(pool), 10, "the stack's sender lock")
        await pool.execute("SELECT pg_terminate_backend($1)", stale)
        tenant = await make_tenant()
        chats = [8_000_000_000 + uuid.uuid4().int % 10**9 for _ in range(8)]
        texts = [f"fencing {uuid.uuid4().hex[:8]} #{i}" for i in range(40)]
        for i, text in enumerate(texts):
            await pool.execute(
                "INSERT INTO telegram_messages (id, tenant_id, chat_id, event_type, text)"
                " VALUES ($1, $2, $3, 'bonus_awarded', $4)",
                uuid.uuid4(),
                uuid.UUID(tenant["tenant_id"]),
                chats[i % len(chats)],
                text,
            )
        tasks["a"] = asyncio.create_task(senders["a"].run(stops["a"]))
        a_lock = await eventually(lambda: lock_holder(pool), 10, "A taking the lock")
        await eventually(
            lambda: _count(fakes["a"], texts, at_least=5), 20, "A sending the first messages"
        )
        tasks["b"] = asyncio.create_task(senders["b"].run(stops["b"]))
        await asyncio.sleep(0.5)
        assert await lock_holder(pool) == a_lock  # B waits while A holds it
        killed_at = time.monotonic()
        await pool.execute("SELECT pg_terminate_backend($1)", a_lock)

        async def all_sent():
            return await pool.fetchval(
                "SELECT count(*) FROM telegram_messages WHERE text = ANY($1::text[])"
                " AND status = 'sent'",
                texts,
            ) == len(texts)

        await eventually(all_sent, 60, "every message sent once B took over")
        b_lock = await lock_holder(pool)
        assert b_lock not in (None, a_lock)
        calls = [c for f in fakes.values() for c in f.calls if c.text in texts]
        assert Counter(c.text for c in calls) == Counter(texts)  # each exactly once
        assert any(c.text in texts for c in fakes["b"].calls)  # B took over
        # A stopped: nothing it sent started after its lock was gone (answers take 0.3 s)
        assert all(c.at < killed_at + 0.3 + 1.0 for c in fakes["a"].calls)
        assert senders["a"].lost and not tasks["a"].done()  # A noticed, and did not crash
    finally:
        for name in tasks:
            stops[name].set()
        await asyncio.wait_for(asyncio.gather(*tasks.values()), 30)
        for fake in fakes.values():
            await fake.stop()
    # the stack's dispatcher, resumed (fixture), takes the lock back by itself
    os.killpg(stack.process("dispatch").proc.pid, signal.SIGCONT)
    await eventually(lambda: lock_holder(pool), 30, "the stack's dispatcher sending again")


async def _count(fake: FakeBotApi, texts: list[str], at_least: int) -> bool:
    return sum(c.text in texts for c in fake.calls) >= at_least
