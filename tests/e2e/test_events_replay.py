"""`kopilka replay events` on the real stack: the read model rebuilt from loyalty.events equals
the one the worker's sink wrote, row for row; reads go on during the rebuild; a stopped rebuild
leaves the live model alone and resumes; `--from` catches a damaged live model up; and
`--to-endpoint` re-delivers a period's events with their original webhook ids."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from outbound_fakes import Receiver
from payloads import WAIT, action, purchase
from standardwebhooks.webhooks import Webhook

from kopilka.cli import events_rebuild
from kopilka.core.settings import PROJECT_ROOT

# the first test starts the stack and drives the load; on a loaded 2-core machine that is minutes
pytestmark = pytest.mark.timeout(600)

SNAPSHOT = {
    "ledger_entries": "SELECT event_id, tenant_id, customer_id, type, order_id, amount, points,"
    " delta, balance_after, expires_at, occurred_at, event, reason FROM ledger_entries"
    " ORDER BY event_id",
    "lots": "SELECT * FROM lots ORDER BY lot_id",
    "balances": "SELECT tenant_id, customer_id, balance, lifetime_spend, level, seq FROM balances"
    " ORDER BY tenant_id, customer_id",
}


async def snapshot(db) -> dict[str, list[tuple]]:
    return {t: [tuple(r) for r in await db.fetch(sql)] for t, sql in SNAPSHOT.items()}


async def quiet_snapshot(db, least: int, timeout_s: float = 60) -> dict[str, list[tuple]]:
    """The read model once the sink has written at least `least` entries and nothing moved
    for 2 s."""
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        now = await snapshot(db)
        if now != last:
            last, since = now, time.monotonic()
        elif len(now["ledger_entries"]) >= least and time.monotonic() - since > 2:
            return now
        await asyncio.sleep(0.3)
    raise AssertionError(f"the read model never settled: {len(last['ledger_entries'])} entries")


async def replay(stack, *args: str, expect: int = 0) -> tuple[dict | None, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kopilka",
        "replay",
        "events",
        *args,
        env=stack.child_env(),
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == expect, err.decode()[-3000:]
    lines = out.decode().strip().splitlines()
    return (json.loads(lines[-1]) if lines else None), err.decode()


_LOADED: dict = {}


@pytest.fixture
async def load(api, make_tenant, db):
    """A mixed load through the webhook (once per module): registrations with a referrer,
    purchases, spends, partial and full refunds, over two shops; then the settled read model."""
    if not _LOADED:
        _LOADED.update(await _drive(api, make_tenant, db))
    return _LOADED


async def _drive(api, make_tenant, db) -> dict:
    since = datetime.now(UTC) - timedelta(seconds=2)
    shops = [await make_tenant("Replay A", referral_percent="3"), await make_tenant("Replay B")]
    sent = 0
    for n, shop in enumerate(shops):
        secret, tag = shop["webhook_secret"], uuid.uuid4().hex[:6]
        referrer = f"ref-{tag}@example.com"
        status, answer, _ = await api.post_webhook(
            secret, json=action("register_user", email=referrer), headers=WAIT
        )
        assert status in (200, 202), answer
        await api.wait_for_customer(shop["api_key"], email=referrer, timeout_s=60)
        requests = []
        for i in range(4 - 2 * n):
            email = f"c{i}-{tag}@example.com"
            if n == 0 and i < 2:
                requests.append(action("register_user", email=email, referrerEmail=referrer))
            requests += [
                purchase(f"{tag}-P{i}", 1000 + 100 * i, email=email),
                purchase(f"{tag}-Q{i}", 2000, email=email),
                action("spend_bonuses", email=email, points=30, orderId=f"{tag}-S{i}"),
            ]
            if i % 2 == 0:
                requests.append(action("refund", orderId=f"{tag}-P{i}", amount=500))
            if i % 3 == 0:
                requests.append(action("refund", orderId=f"{tag}-Q{i}"))
        for body in requests:  # each waits for the ledger (up to 10 s), so they apply in order
            status, answer, _ = await api.post_webhook(
                secret, json=body, headers={"Prefer": "wait=10"}
            )
            assert status in (200, 202), answer
        sent += 1 + len(requests)  # each makes one ledger entry at least
    model = await quiet_snapshot(db, sent, timeout_s=120)
    types = {r[3] for r in model["ledger_entries"]}
    assert {"bonus_awarded", "bonus_spent", "bonus_reversed", "referral_awarded"} <= types, types
    return {"since": since, "shops": shops, "model": model}


async def _read_api_answers(api, shop: dict, email: str, stop: asyncio.Event, seen: list):
    while not stop.is_set():
        status, body = await api.customer(shop["api_key"], email=email)
        seen.append((status, body.get("balance", {}).get("total") if status == 200 else body))
        await asyncio.sleep(0.02)


async def test_a_rebuild_equals_the_sinks_model_while_reads_and_writes_go_on(load, stack, db, api):
    shop, other = load["shops"]
    row = await db.fetchrow(
        "SELECT i.value, b.balance FROM customer_identities i JOIN balances b"
        " ON b.customer_id = i.customer_id WHERE i.tenant_id = $1 AND i.kind = 'email'"
        " ORDER BY i.value LIMIT 1",
        uuid.UUID(shop["tenant_id"]),
    )
    email, balance = row["value"], row["balance"]
    stop, seen = asyncio.Event(), []
    reader = asyncio.create_task(_read_api_answers(api, shop, email, stop, seen))
    # a purchase while the rebuild runs: the sink writes it to the old tables or the new ones
    late = f"late-{uuid.uuid4().hex[:6]}@example.com"
    rebuild = asyncio.create_task(replay(stack, "--into", "postgres", "--batch", "4"))
    status, _, _ = await api.post_webhook(
        other["webhook_secret"], json=purchase(f"LATE-{late}", 700, email=late)
    )
    assert status == 202
    counts, err = await rebuild
    stop.set()
    await reader
    assert "replay events:" in err and "swapped in" in err  # the closing summary
    assert counts["copied"] >= len(load["model"]["ledger_entries"])
    assert seen and all(s == (200, balance) for s in seen), seen[:5]

    await api.wait_for_customer(other["api_key"], email=late)
    after = await quiet_snapshot(db, len(load["model"]["ledger_entries"]) + 1)
    for table, rows in load["model"].items():
        extra = [r for r in after[table] if r not in rows]
        assert [r for r in after[table] if r in rows] == rows, table  # every row, equal
        assert all(str(r[1 if table != "balances" else 0]) == other["tenant_id"] for r in extra)
    replaced = counts["replaced_schema"]
    old = await db.fetchval(f"SELECT count(*) FROM {replaced}.ledger_entries")  # noqa: S608
    assert old >= len(load["model"]["ledger_entries"])
    await db.execute(f"DROP SCHEMA {replaced} CASCADE")


async def test_a_stopped_rebuild_leaves_the_live_model_and_resumes(load, stack, db):
    before = await quiet_snapshot(db, len(load["model"]["ledger_entries"]))
    job = events_rebuild.Rebuild(restart=True, batch=10)
    task = asyncio.create_task(events_rebuild.run(job, stack.settings()))
    job.on_batch = lambda read: read >= 30 and task.cancel()  # what Ctrl-C does to asyncio.run
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await snapshot(db) == before  # the live tables are untouched
    schema = await db.fetchval(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'kopilka_rebuild_%'"
    )
    assert schema is not None
    done = await db.fetchval(f"SELECT sum(next_offset) FROM {schema}._progress")  # noqa: S608
    copied = await db.fetchval(f"SELECT count(*) FROM {schema}.ledger_entries")  # noqa: S608
    assert done >= 10 and 0 < copied < len(before["ledger_entries"])

    counts, err = await replay(stack, "--into", "postgres")
    assert "rebuild_resumed" in err
    assert counts["read"] < sum(1 for _ in before["ledger_entries"]) + 10  # not from scratch
    assert await snapshot(db) == before
    assert not await db.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'kopilka_rebuild_%'"
    )
    await db.execute(f"DROP SCHEMA {counts['replaced_schema']} CASCADE")


async def test_catching_up_from_a_time_restores_a_damaged_live_model(load, stack, db):
    before = await quiet_snapshot(db, len(load["model"]["ledger_entries"]))
    shop = uuid.UUID(load["shops"][0]["tenant_id"])
    for table in ("ledger_entries", "lots", "balances"):
        await db.execute(f"DELETE FROM {table} WHERE tenant_id = $1", shop)  # noqa: S608
    assert await snapshot(db) != before
    counts, err = await replay(stack, "--into", "postgres", "--from", load["since"].isoformat())
    assert "upserted into the live read model" in err
    assert counts["read"] >= sum(1 for r in before["ledger_entries"] if r[1] == shop)
    assert await snapshot(db) == before


@pytest.fixture(scope="module")
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def test_redelivering_a_period_to_an_endpoint_sends_the_original_webhook_ids(
    api, make_tenant, stack, db, receiver
):
    shop = await make_tenant("Replay outbound")
    path = f"/hooks/{uuid.uuid4().hex[:12]}"
    status, endpoint = await api.admin(
        "POST",
        f"tenants/{shop['tenant_id']}/endpoints",
        {"url": receiver.base + path, "event_types": ["bonus_awarded"]},
    )
    assert status == 201, endpoint
    await asyncio.sleep(stack.settings().tenant_cache_ttl_s + 0.1)
    since = (datetime.now(UTC) - timedelta(seconds=2)).isoformat()
    email = f"rd-{uuid.uuid4().hex[:6]}@example.com"
    for body in (
        purchase("RD-1", 1000, email=email),
        purchase("RD-2", 2000, email=email),
        action("spend_bonuses", email=email, points=10, orderId="RD-3"),
    ):
        status, answer, _ = await api.post_webhook(shop["webhook_secret"], json=body, headers=WAIT)
        assert status == 200, answer
    first = list(await receiver.wait_for(path, 2))
    await asyncio.sleep(1)
    assert len(receiver.received[path]) == 2  # the spend is not a type this endpoint wants

    counts, err = await replay(
        stack, "--to-endpoint", endpoint["id"], "--from", since, "--to", "0s"
    )
    assert counts["matched"] == 2 and counts["requeued"] == 2, counts
    assert "replay events:" in err
    again = (await receiver.wait_for(path, 4))[2:]
    await asyncio.sleep(1)
    assert len(receiver.received[path]) == 4  # once more each, no spend
    ids = sorted(r.headers["webhook-id"] for r in first)
    assert sorted(r.headers["webhook-id"] for r in again) == ids
    hook = Webhook(endpoint["secret"])
    for r in again:
        assert hook.verify(r.body, r.headers)["type"] == "bonus_awarded"
    assert sorted(r.body for r in again) == sorted(r.body for r in first)

    await api.admin("POST", f"tenants/{shop['tenant_id']}/endpoints/{endpoint['id']}/disable")
    _, err = await replay(stack, "--to-endpoint", endpoint["id"], "--from", since, expect=1)
    assert "enable it first" in err


async def test_the_rebuild_refuses_a_second_concurrent_run(stack):
    conn = await asyncpg.connect(stack.settings().database_url.get_secret_value())
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", events_rebuild._LOCK)
        _, err = await replay(stack, "--into", "postgres", expect=1)
        assert "another rebuild is running" in err
    finally:
        await conn.close()
