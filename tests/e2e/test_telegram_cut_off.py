"""A Telegram send cut off by a crash is never sent again (sinks.telegram_notifier, "No message
twice"), against the real Postgres and a fake Bot API over real HTTP.

The outbox is set up as a dispatcher killed -9 mid-send leaves it: a message still carrying the
dead sender's lease token. Once that lease is over, the next sender closes it as `failed`
(outcome unknown) and goes on with the chat's next message; while the lease runs, the chat
waits. The stack's own dispatcher is paused meanwhile (SIGSTOP), as in test_dispatch_fencing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest
from outbound_fakes import FakeBotApi

from kopilka.core import db as kdb
from kopilka.devstack import devservices
from sinks.telegram_notifier import _SENDER_LOCK, UNKNOWN_OUTCOME, TelegramSender, make_bot

pytestmark = pytest.mark.timeout(420)

_LOCK_HOLDER = """
SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
   AND (classid::bigint << 32 | objid::bigint) = $1
"""


@pytest.fixture
async def pool(dsn):
    p = await kdb.create_pool(dsn, min_size=1, max_size=4)
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


async def _add(pool, tenant_id, chat_id, text, *, lease_s: float | None = None) -> uuid.UUID:
    """A pending message; `lease_s`: claimed by a sender that died, its lease ending in that
    many seconds (negative: over already)."""
    message_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO telegram_messages (id, tenant_id, chat_id, event_type, text, lease_token,"
        " next_attempt_at) VALUES ($1, $2, $3, 'bonus_awarded', $4, $5,"
        " now() + make_interval(secs => $6))",
        message_id,
        tenant_id,
        chat_id,
        text,
        uuid.uuid4() if lease_s is not None else None,
        lease_s or 0.0,
    )
    return message_id


async def test_a_send_cut_off_by_a_crash_is_not_sent_again(
    pool, make_tenant, stack, stack_dispatcher_paused
):
    fake = FakeBotApi(stack.env["KOPILKA_TELEGRAM_BOT_TOKEN"])
    port = devservices.free_port()
    await fake.start(port)
    settings = stack.settings().model_copy(
        update={
            "telegram_api_url": f"http://127.0.0.1:{port}",
            "telegram_chat_interval_s": 0.0,
            "dispatch_poll_interval_s": 0.2,
        }
    )
    sender = TelegramSender(pool, settings, make_bot(settings))
    stop = asyncio.Event()
    task = None
    tag = uuid.uuid4().hex[:8]
    try:
        # the paused stack dispatcher holds the sender lock: end its session, as a kill would
        stale = await pool.fetchval(_LOCK_HOLDER, _SENDER_LOCK)
        if stale:
            await pool.execute("SELECT pg_terminate_backend($1)", stale)
        tenant = uuid.UUID((await make_tenant())["tenant_id"])
        a, b = (8_100_000_000 + uuid.uuid4().int % 10**8 for _ in range(2))
        cut = await _add(pool, tenant, a, f"{tag} cut off", lease_s=-1.0)
        after_cut = await _add(pool, tenant, a, f"{tag} after the cut-off one")
        leased = await _add(pool, tenant, b, f"{tag} lease running", lease_s=3600.0)
        behind = await _add(pool, tenant, b, f"{tag} behind the leased one")

        task = asyncio.create_task(sender.run(stop))
        deadline = time.monotonic() + 30
        while not fake.delivered(a):
            assert time.monotonic() < deadline, f"chat a got nothing: {fake.calls}"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # time for anything else to (wrongly) go out

        rows = {
            r["id"]: r
            for r in await pool.fetch(
                "SELECT id, status, last_error FROM telegram_messages WHERE id = ANY($1)",
                [cut, after_cut, leased, behind],
            )
        }
        assert rows[cut]["status"] == "failed"
        assert rows[cut]["last_error"].startswith(UNKNOWN_OUTCOME)
        assert rows[after_cut]["status"] == "sent"
        assert [c.text for c in fake.tried(a)] == [f"{tag} after the cut-off one"]
        # a lease still running: the chat waits for it, in order, and nothing goes
        assert (rows[leased]["status"], rows[behind]["status"]) == ("pending", "pending")
        assert fake.tried(b) == []
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 30)
        await fake.stop()
        await pool.execute(
            "UPDATE telegram_messages SET status = 'failed' WHERE status = 'pending'"
            " AND text LIKE $1",
            f"{tag}%",
        )
