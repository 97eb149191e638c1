"""Moving to a new deployment with another partition count (issue 11): every raw webhook of the
session's deployment, replayed into an empty one (its own Kafka, Postgres and worker, 3
partitions instead of 32), gives every customer the same balance.

The shops themselves are not in the raw records: like an operator would (pg_dump of the shop
tables), the test copies `tenants` and `tenant_rules` into the new database and publishes the
rules to its Kafka before its worker starts. Customers, identities, order claims and the ledger
are all derived again from the replayed webhooks."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from payloads import action, purchase

from kopilka.core import db as kdb
from kopilka.core import topics
from kopilka.core.kafka import assign_whole_topic, make_producer
from kopilka.core.settings import PROJECT_ROOT
from kopilka.devstack.stack import Stack
from kopilka.directory import rules_feed

pytestmark = pytest.mark.timeout(900)  # a second stack on a loaded 2-core machine
NEW_PARTITIONS = 3
SHOP_TABLES = ("tenants", "tenant_rules")  # what the raw records do not carry
BALANCES = (
    "SELECT tenant_id, customer_id, balance, lifetime_spend, level FROM balances"
    " WHERE tenant_id = ANY($1::uuid[]) ORDER BY tenant_id, customer_id"
)
ENTRIES = (
    "SELECT customer_id, type, count(*), sum(delta) FROM ledger_entries"
    " WHERE tenant_id = ANY($1::uuid[]) GROUP BY customer_id, type ORDER BY customer_id, type"
)


async def _model(conn, shop_ids: list[uuid.UUID]) -> dict[str, list[tuple]]:
    return {
        "balances": [tuple(r) for r in await conn.fetch(BALANCES, shop_ids)],
        "entries": [tuple(r) for r in await conn.fetch(ENTRIES, shop_ids)],
    }


async def _settled(conn, shop_ids, least: int, timeout_s: float, like=None) -> dict:
    """The shops' balances and entries once at least `least` entries are in (or, with `like`,
    once they equal it) and nothing moved for 2 s."""
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        now = await _model(conn, shop_ids)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > 2 and (
            now == like if like is not None else sum(e[2] for e in now["entries"]) >= least
        ):
            return now
        await asyncio.sleep(0.5)
    return last


async def _drive(api, make_tenant) -> tuple[list[dict], int]:
    """Purchases, partial and full refunds, spends within the balance, registrations and a
    referral, over two shops, each request applied before the next (Prefer: wait)."""
    shops = [await make_tenant("Move A", referral_percent="3"), await make_tenant("Move B")]
    sent = 0
    for n, shop in enumerate(shops):
        secret, tag = shop["webhook_secret"], uuid.uuid4().hex[:6]
        referrer = f"ref-{tag}@example.com"
        requests = [action("register_user", email=referrer)]
        for i in range(4 - n):
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
        for body in requests:
            status, answer, _ = await api.post_webhook(
                secret, json=body, headers={"Prefer": "wait=10"}
            )
            assert status in (200, 202), answer
        sent += len(requests)
    return shops, sent


@pytest.fixture
def new_deployment(stack):
    """An empty deployment beside the session's: its own Kafka, Postgres and one worker, with
    another partition count. Started by the same machinery as the session's
    (kopilka.devstack.stack)."""
    saved_env = dict(os.environ)  # Stack.settings() writes its env into os.environ
    env = {
        "KOPILKA_TOPIC_PARTITIONS": str(NEW_PARTITIONS),
        "KOPILKA_LOG_LEVEL": "INFO",
        # not the session's 1 s: how long a refund or a referee waits for what it needs, beyond
        # which it still waits while the raw backlog before it is not done (streams.deferral)
        "KOPILKA_REFUND_ORDER_WAIT_S": "10",
        "REDIS_URL": stack.env["REDIS_URL"],  # the worker does not use it; saves a process
    }
    new = Stack.fresh(
        "test-new-deployment",
        env,
        durable=False,
        kafka_heap="384m",
        out=lambda msg: print(msg, file=sys.stderr),
    )
    try:
        new.start_services()
        yield new
    finally:
        new.stop()
        os.environ.clear()
        os.environ.update(saved_env)
        stack.settings()  # the session's settings again


async def _copy_shops(source_dsn: str, new: Stack) -> int:
    """The shop tables, as pg_dump would carry them, then every shop's rules on the new
    Kafka (the worker reads them from tenants.rules)."""
    settings = new.settings()
    src = await asyncpg.connect(source_dsn)
    dst = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        for table in SHOP_TABLES:
            rows = await src.fetch(f"SELECT * FROM {table}")  # noqa: S608 (fixed names)
            await dst.copy_records_to_table(
                table, records=[tuple(r) for r in rows], columns=list(rows[0].keys())
            )
    finally:
        await src.close()
        await dst.close()
    pool = await kdb.create_pool(settings.database_url.get_secret_value(), max_size=1)
    producer = make_producer(settings)
    await producer.start()
    try:
        return await rules_feed.publish_all(pool, producer)
    finally:
        await producer.stop()
        await pool.close()


async def _partitions(bootstrap: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return len(await assign_whole_topic(consumer, topics.WEBHOOKS_RAW.name))
    finally:
        await consumer.stop()


async def test_replaying_every_raw_webhook_into_an_empty_deployment_gives_the_same_balances(
    api, make_tenant, stack, dsn, db, new_deployment, tmp_path
):
    shops, sent = await _drive(api, make_tenant)
    shop_ids = [uuid.UUID(s["tenant_id"]) for s in shops]
    original = await _settled(db, shop_ids, sent, timeout_s=120)
    types = {e[1] for e in original["entries"]}
    assert {"bonus_awarded", "bonus_spent", "bonus_reversed", "referral_awarded"} <= types, types
    assert len(original["balances"]) >= 7

    new = new_deployment
    assert await _copy_shops(dsn, new) >= len(shops)
    new.start_worker(wait_ready=True)
    target = new.env["KAFKA_BOOTSTRAP_SERVERS"]
    session_env = {**stack.child_env(), "KOPILKA_REPLAY_STATE_DIR": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "kopilka", "replay", "raw", "--into-bootstrap", target),
        env=session_env,  # the source is the session's deployment
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, err.decode()
    counts = json.loads(out.decode().strip().splitlines()[-1])
    assert counts["refed"] == counts["scanned"] >= sent  # every raw record, not only the shops'
    assert f"into {target}" in err.decode()
    assert await _partitions(stack.env["KAFKA_BOOTSTRAP_SERVERS"]) != NEW_PARTITIONS
    assert await _partitions(target) == NEW_PARTITIONS

    conn = await asyncpg.connect(new.settings().database_url.get_secret_value())
    try:
        moved = await _settled(conn, shop_ids, sent, timeout_s=240, like=original)
    finally:
        await conn.close()
    assert moved["balances"] == original["balances"]
    assert moved["entries"] == original["entries"]
