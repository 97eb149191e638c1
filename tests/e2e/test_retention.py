"""Retention on the real Postgres: old finished rows go, in batches; new and unfinished ones stay.

Rows are written straight into the tables with old timestamps (nothing else in the session is
older than a day), then pruned by the same code `kopilka prune` and `kopilka dispatch` run.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from kopilka.core import db as kdb
from kopilka.directory import retention, subscriptions

# the first test of a session also waits for the whole stack to start (slow on a busy box)
pytestmark = pytest.mark.timeout(420)

NOW = datetime.now(UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
async def pool(dsn):
    p = await kdb.create_pool(dsn, min_size=1, max_size=4)
    yield p
    await p.close()


@pytest.fixture
async def rows(pool, make_tenant):
    """One tenant's worth of old and new rows in every table retention looks at."""
    tenant = await make_tenant()
    tid = uuid.UUID(tenant["tenant_id"])
    ep = await subscriptions.add_endpoint(pool, str(tid), "http://127.0.0.1:9/hook", None)
    await subscriptions.set_endpoint_enabled(pool, str(tid), ep["id"], False)
    eid = uuid.UUID(ep["id"])
    ids: dict[str, uuid.UUID] = {}

    def new(name: str) -> uuid.UUID:
        ids[name] = uuid.uuid4()
        return ids[name]

    for name, at in (("audit_old", ago(31)), ("audit_new", ago(1))):
        await pool.execute(
            "INSERT INTO webhook_audit (event_id, tenant_id, received_at, status)"
            " VALUES ($1, $2, $3, 'rejected')",
            new(name),
            tid,
            at,
        )
    deliveries = [(f"ok_old_{i}", "succeeded", ago(40)) for i in range(5)] + [
        ("ok_new", "succeeded", ago(1)),
        ("dead_old", "dead", ago(100)),
        ("dead_recent", "dead", ago(40)),  # dead ones stay 90 days: still redrivable
        ("pending_old", "pending", None),
    ]
    for name, status, finished in deliveries:
        did = new(name)
        await pool.execute(
            "INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type,"
            " payload, status, created_at, finished_at) VALUES ($1,$2,$3,$4,'bonus_awarded','{}',"
            " $5, $6, $7)",
            did,
            eid,
            tid,
            uuid.uuid4(),
            status,
            ago(120),
            finished,
        )
        for _ in range(2):
            await pool.execute(
                "INSERT INTO webhook_attempts (delivery_id, endpoint_id, tenant_id, attempted_at,"
                " outcome, latency_ms) VALUES ($1, $2, $3, $4, 'failed', 1)",
                did,
                eid,
                tid,
                finished or ago(1),
            )
    chat = 7_000_000_000 + uuid.uuid4().int % 10**9
    for name, status, at in (
        ("tg_sent_old", "sent", ago(31)),
        ("tg_failed_old", "failed", ago(31)),
        ("tg_sent_new", "sent", ago(1)),
        ("tg_pending_old", "pending", ago(31)),
    ):
        await pool.execute(  # not due for a day: the stack's sender leaves it alone
            "INSERT INTO telegram_messages (id, tenant_id, chat_id, event_type, text, status,"
            " created_at, next_attempt_at) VALUES ($1, $2, $3, 'bonus_awarded', $4, $5, $6,"
            " now() + interval '1 day')",
            new(name),
            tid,
            chat,
            name,
            status,
            at,
        )
    # identity conflicts: "resolved" = the other customer no longer owns the email or phone
    owner = new("customer_still_owning")
    await pool.execute("INSERT INTO customers (id, tenant_id) VALUES ($1, $2)", owner, tid)
    email = f"{uuid.uuid4().hex}@example.com"
    await pool.execute(
        "INSERT INTO customer_identities (tenant_id, kind, value, customer_id)"
        " VALUES ($1, 'email', $2, $3)",
        tid,
        email,
        owner,
    )
    for name, other, at in (
        ("conflict_resolved_old", uuid.uuid4(), ago(181)),
        ("conflict_open_old", owner, ago(181)),
        ("conflict_resolved_new", uuid.uuid4(), ago(10)),
    ):
        await pool.execute(
            "INSERT INTO identity_conflicts (tenant_id, chosen_id, other_id, email, seen_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            tid,
            new(name),
            other,
            email,
            at,
        )
    for name, at, settled in (
        ("claim_500d", ago(500), True),
        ("claim_300d", ago(300), True),
        ("claim_new", ago(1), False),
    ):
        await pool.execute(
            "INSERT INTO order_claims (tenant_id, order_id, customer_id, claimed_at, settled_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            tid,
            f"{name}-{uuid.uuid4().hex[:6]}",
            new(name),
            at,
            at if settled else None,
        )
    return tid, ids


async def present(pool, tid, ids) -> set[str]:
    """The names of the test's rows that still exist."""
    checks = {
        "webhook_audit": "event_id",
        "webhook_deliveries": "id",
        "telegram_messages": "id",
        "identity_conflicts": "chosen_id",
        "order_claims": "customer_id",
    }
    found: set[uuid.UUID] = set()
    for table, column in checks.items():
        found |= {
            r[0]
            for r in await pool.fetch(
                f"SELECT {column} FROM {table} WHERE tenant_id = $1",  # noqa: S608
                tid,
            )
        }
    return {name for name, i in ids.items() if i in found} - {"customer_still_owning"}


async def test_prune_deletes_old_finished_rows_in_batches_and_keeps_the_rest(pool, rows, stack):
    tid, ids = rows
    before = await present(pool, tid, ids)
    assert before == set(ids) - {"customer_still_owning"}

    # the command line, dry: it counts at least our old rows and deletes nothing
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kopilka",
        "prune",
        "--dry-run",
        env=stack.child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    dry = {item["table"]: item for item in json.loads(stdout)}
    assert dry["webhook_deliveries.succeeded"]["would_delete"] >= 5
    assert dry["order_claims"] == {"table": "order_claims", "days": 0, "kept": "forever"}
    assert await present(pool, tid, ids) == before

    settings = stack.settings().model_copy(update={"retention_batch": 2})
    report = {item["table"]: item for item in await retention.prune(pool, settings)}
    assert report["webhook_deliveries.succeeded"]["deleted"] >= 5
    assert report["webhook_deliveries.succeeded"]["attempts_deleted"] >= 10
    assert await present(pool, tid, ids) == {
        "audit_new",
        "ok_new",
        "dead_recent",
        "pending_old",
        "tg_sent_new",
        "tg_pending_old",
        "conflict_open_old",
        "conflict_resolved_new",
        "claim_500d",  # order claims: kept forever by default
        "claim_300d",
        "claim_new",
    }
    gone = [ids[n] for n in ids if n.startswith(("ok_old", "dead_old"))]
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM webhook_attempts WHERE delivery_id = ANY($1::uuid[])", gone
        )
        == 0
    )

    # order claims, when asked, go only once settled, never younger than the refund window
    settings = settings.model_copy(
        update={"retention_order_claims_days": 30, "order_refund_window_days": 365}
    )
    assert retention.effective_days(retention.RULES[-1], settings) == 365
    await retention.prune(pool, settings)
    left = await present(pool, tid, ids)
    assert "claim_500d" not in left
    assert {"claim_300d", "claim_new"} <= left


async def test_the_outboxes_keep_rows_younger_than_the_replay_horizon(pool, rows, stack):
    tid, ids = rows
    settings = stack.settings().model_copy(
        update={"retention_deliveries_days": 1, "retention_telegram_days": 1}
    )
    assert settings.replay_horizon_days == 8
    await retention.prune(pool, settings)
    left = await present(pool, tid, ids)
    assert {"ok_new", "tg_sent_new"} <= left  # a day old: a replay could still bring them back


async def test_the_dispatcher_loop_prunes_periodically(pool, rows, stack):
    tid, ids = rows
    settings = stack.settings().model_copy(update={"retention_interval_s": 0.2})
    stopping = asyncio.Event()
    task = asyncio.create_task(retention.run_periodically(pool, settings, stopping))
    try:
        for _ in range(100):
            if "audit_old" not in await present(pool, tid, ids):
                break
            await asyncio.sleep(0.1)
        # something old arriving later is caught by a later round
        late = uuid.uuid4()
        await pool.execute(
            "INSERT INTO webhook_audit (event_id, tenant_id, received_at, status)"
            " VALUES ($1, $2, $3, 'rejected')",
            late,
            tid,
            ago(60),
        )
        for _ in range(100):
            if not await pool.fetchval("SELECT 1 FROM webhook_audit WHERE event_id = $1", late):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the periodic prune never removed the late row")
        assert {"audit_old", "ok_old_0", "tg_sent_old"}.isdisjoint(await present(pool, tid, ids))
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
