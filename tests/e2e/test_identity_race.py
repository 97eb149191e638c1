"""Two workers resolving the same new customer at once end with one customer, on real Postgres.

webhooks.raw spreads one shop over every partition, so two requests naming the same person can
be normalised at the same moment by two worker processes. Each side here has its own pool and
its own cache, as two workers do.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from kopilka.core import db
from kopilka.directory.customers import CustomerDirectory

ROUNDS = 60


@pytest.fixture
async def two_workers(dsn):
    pools = [await db.create_pool(dsn, min_size=2, max_size=4) for _ in range(2)]
    yield [CustomerDirectory(p) for p in pools]
    for p in pools:
        await p.close()


async def _owners(conn: asyncpg.Connection, tenant_id: str, email: str, phone: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT customer_id FROM customer_identities WHERE tenant_id = $1"
        " AND ((kind = 'email' AND value = $2) OR (kind = 'phone' AND value = $3))",
        uuid.UUID(tenant_id),
        email,
        phone,
    )
    return {str(r["customer_id"]) for r in rows}


@pytest.mark.parametrize(
    "first, second",
    [
        ({"email": True}, {"email": True, "phone": True}),
        ({"phone": True}, {"email": True, "phone": True}),
        ({"email": True, "phone": True}, {"email": True, "phone": True}),
    ],
    ids=["email-vs-both", "phone-vs-both", "both-vs-both"],
)
async def test_racing_resolutions_make_one_customer(two_workers, tenant, db, first, second):
    a, b = two_workers
    tenant_id = tenant["tenant_id"]
    split = 0
    for i in range(ROUNDS):
        email, phone = f"race{i}-{uuid.uuid4().hex[:8]}@example.com", f"+7999{i:07d}"

        def ask(which: dict, email=email, phone=phone) -> dict:
            return {
                "email": email if which.get("email") else None,
                "phone": phone if which.get("phone") else None,
            }

        ra, rb = await asyncio.gather(
            a.resolve(tenant_id, **ask(first)), b.resolve(tenant_id, **ask(second))
        )
        owners = await _owners(db, tenant_id, email, phone)
        if ra.id != rb.id or owners != {ra.id}:
            split += 1
    print(f"\nidentity race {first} vs {second}: {ROUNDS} rounds, {split} split customers")
    assert split == 0


async def test_racing_order_claims_have_one_owner(two_workers, tenant):
    a, b = two_workers
    tenant_id = tenant["tenant_id"]
    for i in range(ROUNDS):
        order = f"race-order-{i}-{uuid.uuid4().hex[:6]}"
        ca, cb = str(uuid.uuid4()), str(uuid.uuid4())
        ca_owner, cb_owner = await asyncio.gather(
            a.claim_order(tenant_id, order, ca), b.claim_order(tenant_id, order, cb)
        )
        assert ca_owner == cb_owner and ca_owner in (ca, cb)
