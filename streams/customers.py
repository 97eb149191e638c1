"""Find or create the customer behind an email and/or phone: the identity directory in Postgres.

Rules (deterministic, so concurrent workers and replays agree):
- a new customer's id is derived from its first identity (phone if given, else email), so two
  workers creating the same customer at once create the same row;
- a request carrying an identity the customer lacks links it to that customer;
- when the email and the phone already belong to two different customers, the customer created
  first wins, the other keeps its identity, and the conflict is logged.
"""

from __future__ import annotations

import uuid

import asyncpg

from kopilka.cache import TTLCache
from kopilka.ids import derived_id
from kopilka.logging import get_logger
from schemas.messages import CustomerRef

log = get_logger(__name__)

_FIND = """
SELECT i.kind, i.value, c.id, c.email, c.phone, c.created_at
FROM customer_identities i JOIN customers c ON c.id = i.customer_id
WHERE i.tenant_id = $1
  AND ((i.kind = 'email' AND i.value = $2) OR (i.kind = 'phone' AND i.value = $3))
ORDER BY c.created_at, c.id
"""


class CustomerDirectory:
    def __init__(self, pool: asyncpg.Pool, cache_size: int = 200_000) -> None:
        self.pool = pool
        self._cache: TTLCache[tuple, CustomerRef] = TTLCache(cache_size, ttl_s=3600)

    async def resolve(
        self, tenant_id: str, *, email: str | None, phone: str | None, name: str | None = None
    ) -> CustomerRef:
        if not (email or phone):
            raise ValueError("a customer needs an email or a phone")
        cache_key = (tenant_id, email, phone)
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit
        tenant = uuid.UUID(tenant_id)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_FIND, tenant, email, phone)
            if not rows:
                first = ("phone", phone) if phone else ("email", email)
                customer_id = uuid.UUID(derived_id(tenant_id, "customer", *first))
                await conn.execute(
                    "INSERT INTO customers (id, tenant_id, email, phone, name)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                    customer_id,
                    tenant,
                    email,
                    phone,
                    name,
                )
            else:
                customer_id = rows[0]["id"]
                owners = {r["id"] for r in rows}
                if len(owners) > 1:
                    log.warning(
                        "identity_conflict",
                        tenant_id=tenant_id,
                        chosen=str(customer_id),
                        others=[str(o) for o in owners - {customer_id}],
                    )
            known = {(r["kind"], r["value"]) for r in rows}
            for kind, value in (("email", email), ("phone", phone)):
                if value and (kind, value) not in known:
                    await conn.execute(
                        "INSERT INTO customer_identities (tenant_id, kind, value, customer_id)"
                        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        tenant,
                        kind,
                        value,
                        customer_id,
                    )
            row = await conn.fetchrow(
                "UPDATE customers SET email = COALESCE(email, $2), phone = COALESCE(phone, $3),"
                " name = COALESCE(name, $4) WHERE id = $1 RETURNING id, email, phone",
                customer_id,
                email,
                phone,
                name,
            )
        ref = CustomerRef(id=str(row["id"]), email=row["email"], phone=row["phone"])
        self._cache.set(cache_key, ref)
        return ref
