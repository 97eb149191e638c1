"""The Postgres sinks (ledger, audit, dead letters) as plain calls (no Faust, no Kafka), against
the session stack's Postgres.

What the worker's agents (streams/read_model.py, streams/dead_letters.py) rely on: the sink
protocol, writes idempotent on their ids, a lot moved once however often its event is written,
a failed flush that keeps its batch, and the dead status of an audit row that nothing undoes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from kopilka.core import db
from schemas.dead_letters import DeadLetter
from schemas.events import BonusAwarded, BonusSpent, LotPoints
from schemas.messages import AuditRecord, CustomerRef, audit_batch
from sinks.base import Sink
from sinks.dead_letters import DeadLetterSink
from sinks.postgres import AuditSink, ReadModelSink

pytestmark = pytest.mark.connected

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def dsn(stack) -> str:
    return stack.settings().database_url.get_secret_value()


@pytest.fixture
async def pool(dsn):
    p = await db.create_pool(dsn, min_size=1, max_size=2)
    yield p
    await p.close()


def award(tenant: str, customer: str, order: str, points: int = 50, seq: int = 1) -> BonusAwarded:
    return BonusAwarded(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant,
        customer=CustomerRef(id=customer, email="c@example.com"),
        occurred_at=T0,
        seq=seq,
        balance_after=points,
        lifetime_spend="1000",
        order_id=order,
        amount="1000",
        percent="5",
        points=points,
        available_at=T0,
        expires_at=T0 + timedelta(days=365),
    )


def spend(first: BonusAwarded, points: int, seq: int = 2) -> BonusSpent:
    return BonusSpent(
        event_id=str(uuid.uuid4()),
        tenant_id=first.tenant_id,
        customer=first.customer,
        occurred_at=T0 + timedelta(minutes=1),
        seq=seq,
        balance_after=first.points - points,
        lifetime_spend="1000",
        order_id="S-1",
        points=points,
        lots=[LotPoints(lot_id=first.event_id, points=points)],
    )


def audit(event_id: str, status: str, code: str) -> bytes:
    return AuditRecord(
        event_id=event_id,
        tenant_id=str(uuid.uuid4()),
        received_at=T0,
        status=status,
        http_status=202 if status == "accepted" else None,
        code=code,
        reason=f"{status} in a test",
    ).to_bytes()


async def ledger_of(conn: asyncpg.Connection, tenant: str, customer: str) -> dict:
    entries = await conn.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND customer_id = $2",
        uuid.UUID(tenant),
        uuid.UUID(customer),
    )
    lots = await conn.fetch(
        "SELECT points, remaining FROM lots WHERE tenant_id = $1 AND customer_id = $2",
        uuid.UUID(tenant),
        uuid.UUID(customer),
    )
    balance = await conn.fetchrow(
        "SELECT balance, seq FROM balances WHERE tenant_id = $1 AND customer_id = $2",
        uuid.UUID(tenant),
        uuid.UUID(customer),
    )
    return {
        "entries": entries,
        "lots": [tuple(r) for r in lots],
        "balance": tuple(balance) if balance else None,
    }


def test_each_follows_the_sink_protocol():
    assert isinstance(ReadModelSink(), Sink)
    assert isinstance(AuditSink(), Sink)
    assert isinstance(DeadLetterSink(), Sink)


async def test_the_read_model_sink_writes_a_batch_once_however_often_it_is_flushed(pool):
    tenant, customer = str(uuid.uuid4()), str(uuid.uuid4())
    first = award(tenant, customer, "O-1")
    then = spend(first, 20)
    connects = []

    async def connect() -> asyncpg.Pool:
        connects.append(1)
        return pool

    sink = ReadModelSink(connect)
    await sink.setup()
    await sink.setup()  # idempotent: the agent calls it before every flush
    assert connects == [1]
    for event in (first, then):
        sink.add(event.to_bytes())
    assert await sink.flush() == 2
    assert await sink.flush() == 0  # flushed means emptied

    # the same events again (a replay, a redelivery): nothing moves twice
    for event in (then, first, then):
        sink.add(event.to_bytes())
    assert await sink.flush() == 2
    async with pool.acquire() as conn:
        assert await ledger_of(conn, tenant, customer) == {
            "entries": 2,
            "lots": [(50, 30)],
            "balance": (30, 2),
        }
    await sink.close()
    assert sink.pool is None
    assert await pool.fetchval("SELECT 1") == 1  # the pool is its owner's: still open


async def test_an_unreadable_record_is_refused_and_the_batch_stays_as_it_was(pool):
    tenant, customer = str(uuid.uuid4()), str(uuid.uuid4())
    sink = ReadModelSink()
    sink.add(award(tenant, customer, "O-1").to_bytes())
    with pytest.raises(ValueError):
        sink.add(b'{"not": "an event"}')
    assert await sink.flush(pool) == 1  # a pool passed in (the replay commands) needs no setup
    async with pool.acquire() as conn:
        assert (await ledger_of(conn, tenant, customer))["entries"] == 1


async def test_a_failed_flush_keeps_its_batch_and_clear_drops_it(pool):
    """What the agent's split relies on: a refused batch can be flushed again or cleared."""
    tenant, customer = str(uuid.uuid4()), str(uuid.uuid4())
    sink = ReadModelSink()
    sink.add(award(tenant, customer, "O-1").to_bytes())
    with pytest.raises(RuntimeError):  # neither set up nor given a pool
        await sink.flush()
    assert len(sink.events) == 1
    # a second award for the same order: the database refuses the whole transaction
    sink.add(award(tenant, customer, "O-1", points=7, seq=2).to_bytes())
    with pytest.raises(asyncpg.UniqueViolationError):
        await sink.flush(pool)
    assert len(sink.events) == 2
    async with pool.acquire() as conn:
        assert await ledger_of(conn, tenant, customer) == {
            "entries": 0,
            "lots": [],
            "balance": None,
        }
    sink.clear()
    assert await sink.flush(pool) == 0


async def test_the_audit_sink_reads_the_normaliser_s_records_of_many_lines(pool):
    first, second, dead = (str(uuid.uuid4()) for _ in range(3))
    sink = AuditSink()
    lines = [AuditRecord.from_bytes(audit(i, "accepted", "accepted")) for i in (first, second)]
    sink.add(audit_batch(lines))
    sink.add(audit(dead, "accepted", "accepted"))
    sink.add(audit(dead, "dead", "unparseable"))
    assert await sink.flush(pool) == 3
    rows = await pool.fetch(
        "SELECT event_id::text, status FROM webhook_audit WHERE event_id = ANY($1::uuid[])",
        [first, second, dead],
    )
    assert sorted(tuple(r) for r in rows) == sorted(
        [(first, "accepted"), (second, "accepted"), (dead, "dead")]
    )


async def test_the_audit_sink_keeps_one_row_per_request_and_dead_wins(pool):
    accepted, rejected = str(uuid.uuid4()), str(uuid.uuid4())
    sink = AuditSink()
    sink.add(audit(accepted, "accepted", "accepted"))
    sink.add(audit(accepted, "dead", "unparseable"))  # in one batch: dead replaces accepted
    sink.add(audit(rejected, "rejected", "bad_signature"))
    assert await sink.flush(pool) == 2
    sink.add(audit(accepted, "accepted", "accepted"))  # a redelivery later does not undo it
    assert await sink.flush(pool) == 1
    rows = await pool.fetch(
        "SELECT event_id::text, status, code FROM webhook_audit WHERE event_id = ANY($1::uuid[])",
        [accepted, rejected],
    )
    assert sorted(tuple(r) for r in rows) == sorted(
        [(accepted, "dead", "unparseable"), (rejected, "rejected", "bad_signature")]
    )


async def test_the_dead_letter_sink_stores_each_letter_once(pool):
    letter = DeadLetter.of(
        stage="normalize",
        source_topic="webhooks.raw",
        partition=0,
        offset=uuid.uuid4().int % 10**12,  # a source position of its own: its own letter id
        key=b"k",
        value=b"\xff not json",
        code="internal_error",
        reason="boom",
    )
    sink = DeadLetterSink(lambda: _ready(pool))
    sink.add(letter.to_bytes())
    with pytest.raises(ValueError):
        sink.add(b"not a dead letter")
    sink.add(letter.to_bytes())  # the same letter twice in one batch
    await sink.setup()
    assert await sink.flush() == 2
    sink.add(letter.to_bytes())  # and once more later
    assert await sink.flush() == 1
    stored = await pool.fetch(
        "SELECT value, code FROM dead_letters WHERE id = $1", uuid.UUID(letter.dead_letter_id)
    )
    assert [tuple(r) for r in stored] == [(b"\xff not json", "internal_error")]


async def _ready(pool: asyncpg.Pool) -> asyncpg.Pool:
    return pool
