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


def _people(round_: int, n: int) -> list[tuple[str | None, str | None, str | None]]:
    tag = uuid.uuid4().hex[:8]
    people = []
    for i in range(n):
        email = f"bulk{round_}-{i}-{tag}@example.com"
        phone = f"+7998{round_:02d}{i:05d}"
        # every third has both, the others one or the other
        people.append(
            (email, phone if i % 3 == 0 else None, f"N{i}") if i % 2 else (None, phone, None)
        )
    return people


async def test_new_customers_made_together_are_the_ones_made_one_by_one(two_workers, tenant, db):
    together, one_by_one = two_workers
    tenant_id = tenant["tenant_id"]
    people = _people(0, 200)
    known = people[:10]
    for email, phone, name in known:  # already in the directory: left to resolve
        await one_by_one.resolve(tenant_id, email=email, phone=phone, name=name)
    shared = [(people[21][0], "+79970000001", None)]  # people[21]'s email, another phone
    made = await together.create_new(tenant_id, people + shared)
    assert made == 200 - 10 - 1  # neither the known nor the two naming the same email
    again = CustomerDirectory(together.pool)  # no cache: what the directory holds
    for email, phone, name in people:
        ref = await again.resolve(tenant_id, email=email, phone=phone, name=name)
        assert ref == await together.resolve(tenant_id, email=email, phone=phone, name=name)
        assert await _owners(db, tenant_id, email or "", phone or "") == {ref.id}
    names = dict(
        await db.fetch(
            "SELECT coalesce(email, phone), name FROM customers WHERE tenant_id = $1",
            uuid.UUID(tenant_id),
        )
    )
    assert all(names[email or phone] == name for email, phone, name in people[10:20])


async def test_customers_made_together_race_one_by_one_into_one_customer(two_workers, tenant, db):
    together, one_by_one = two_workers
    tenant_id = tenant["tenant_id"]
    split = 0
    for r in range(1, 11):
        people = _people(r, 50)
        results = await asyncio.gather(
            together.create_new(tenant_id, people),
            *(one_by_one.resolve(tenant_id, email=e, phone=p, name=n) for e, p, n in people[::2]),
        )
        for (email, phone, name), theirs in zip(people[::2], results[1:], strict=True):
            ours = await together.resolve(tenant_id, email=email, phone=phone, name=name)
            if ours != theirs or await _owners(db, tenant_id, email or "", phone or "") != {
                ours.id
            }:
                split += 1
    print(f"\nbulk vs one-by-one creation: 10 rounds of 50 people, {split} split customers")
    assert split == 0
