"""Many new customers at once: a few statements for a whole batch, not a transaction each.

A marketplace's batch, or a busy minute of new buyers, names thousands of people the directory
has never seen. One by one (`CustomerDirectory.resolve`) each costs a transaction of five or six
round trips. Here the plainly new ones are created together, with the same ids and rows as one
by one:
- only people whose every identity appears in this call under one (email, phone) pair, and is
  not in the directory yet; anyone else (an identity shared between two pairs, or already
  known) is left to `resolve`, which orders such requests and links identities;
- the customer's id derives from its first identity, as in `resolve`, so a worker creating the
  same person at the same moment writes the same customer row;
- when another transaction took any of these identities meanwhile, the whole call is rolled
  back and creates nothing: `resolve` then finds the winner's customers, one by one.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable

import asyncpg

from kopilka.core.ids import derived_id
from schemas.messages import CustomerRef

Person = tuple[str | None, str | None, str | None]  # email, phone, name
Pair = tuple[str | None, str | None]  # email, phone

_KNOWN = """
SELECT i.kind, i.value FROM customer_identities i
JOIN unnest($2::text[], $3::text[]) AS asked(kind, value)
  ON i.kind = asked.kind AND i.value = asked.value
WHERE i.tenant_id = $1
"""
_CUSTOMERS = """
INSERT INTO customers (id, tenant_id, email, phone, name)
SELECT id, $1, email, phone, name
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[]) AS new(id, email, phone, name)
ON CONFLICT (id) DO NOTHING
"""
_IDENTITIES = """
WITH added AS (
    INSERT INTO customer_identities (tenant_id, kind, value, customer_id)
    SELECT $1, kind, value, customer_id
    FROM unnest($2::text[], $3::text[], $4::uuid[]) AS new(kind, value, customer_id)
    ON CONFLICT (tenant_id, kind, value) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM added
"""


class _Taken(Exception):
    """Another transaction created one of the identities since they were looked up."""


def _identities(pair: Pair) -> list[tuple[str, str]]:
    email, phone = pair
    return [(kind, value) for kind, value in (("email", email), ("phone", phone)) if value]


def customer_id(tenant_id: str, pair: Pair) -> uuid.UUID:
    """A new customer's id: derived from its phone if it has one, else from its email."""
    email, phone = pair
    first = ("phone", phone) if phone else ("email", email)
    return uuid.UUID(derived_id(tenant_id, "customer", *first))


def _unshared(people: Iterable[Person]) -> dict[Pair, str | None]:
    """(email, phone) -> the first name given, for pairs none of whose identities another pair
    of the call names too."""
    names: dict[Pair, str | None] = {}
    for email, phone, name in people:
        if email or phone:
            names.setdefault((email, phone), name)
    uses = Counter(identity for pair in names for identity in _identities(pair))
    return {
        pair: name
        for pair, name in names.items()
        if all(uses[identity] == 1 for identity in _identities(pair))
    }


async def create_new(
    pool: asyncpg.Pool, tenant_id: str, people: Iterable[Person]
) -> dict[Pair, CustomerRef]:
    """Create the plainly new customers among `people`: (email, phone) -> the customer."""
    candidates = _unshared(people)
    if not candidates:
        return {}
    tenant = uuid.UUID(tenant_id)
    asked = [identity for pair in candidates for identity in _identities(pair)]
    async with pool.acquire() as conn:
        known = {
            (row["kind"], row["value"])
            for row in await conn.fetch(
                _KNOWN, tenant, [kind for kind, _ in asked], [value for _, value in asked]
            )
        }
        new = [p for p in candidates if not any(i in known for i in _identities(p))]
        if not new:
            return {}
        ids = [customer_id(tenant_id, pair) for pair in new]
        # rows in key order: two workers inserting overlapping batches lock them in the same
        # order, so they wait for each other instead of deadlocking
        links = sorted(
            (kind, value, cid)
            for pair, cid in zip(new, ids, strict=True)
            for kind, value in _identities(pair)
        )
        rows = sorted(zip(ids, new, strict=True))
        try:
            async with conn.transaction():
                await conn.execute(
                    _CUSTOMERS,
                    tenant,
                    [cid for cid, _ in rows],
                    [email for _, (email, _) in rows],
                    [phone for _, (_, phone) in rows],
                    [candidates[pair] for _, pair in rows],
                )
                added = await conn.fetchval(
                    _IDENTITIES,
                    tenant,
                    [kind for kind, _, _ in links],
                    [value for _, value, _ in links],
                    [cid for _, _, cid in links],
                )
                if added != len(links):
                    raise _Taken
        except _Taken:
            return {}
    return {
        pair: CustomerRef(id=str(cid), email=pair[0], phone=pair[1])
        for pair, cid in zip(new, ids, strict=True)
    }
