"""Find or create the customer behind an email and/or phone: the identity directory in Postgres.

Rules (deterministic, so concurrent workers and replays agree):
- a new customer's id is derived from its first identity (phone if given, else email), so two
  workers creating the same customer at once create the same row;
- a request carrying an identity the customer lacks links it to that customer;
- when the email and the phone already belong to two different customers, the customer created
  first wins, the other keeps its identity, and the conflict is logged and recorded in
  identity_conflicts for support to merge by hand if they are one person.
"""

from __future__ import annotations

import hashlib
import uuid

import asyncpg

from kopilka.core.cache import TTLCache
from kopilka.core.logging import get_logger
from kopilka.directory import new_customers
from kopilka.directory.new_customers import customer_id as new_customer_id
from schemas.messages import CustomerRef

log = get_logger(__name__)

_FIND = """
SELECT i.kind, i.value, c.id, c.email, c.phone, c.created_at
FROM customer_identities i JOIN customers c ON c.id = i.customer_id
WHERE i.tenant_id = $1
  AND ((i.kind = 'email' AND i.value = $2) OR (i.kind = 'phone' AND i.value = $3))
ORDER BY c.created_at, c.id
"""


class ReferralRefused(ValueError):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def referral_code_for(tenant_id: str, customer_id: str, attempt: int = 0) -> str:
    """An 8-character code (Crockford base32, 40 bits) derived from the customer: the same
    customer always gets the same code; on a clash within the tenant, the next attempt."""
    digest = hashlib.sha256(f"{tenant_id}:{customer_id}:{attempt}".encode()).digest()
    number = int.from_bytes(digest[:5], "big")
    return "".join(_CROCKFORD[(number >> shift) & 31] for shift in range(35, -1, -5))


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_MAX_CHAIN = 1000


class _LostRace(Exception):
    """Another transaction took an identity this one was about to create."""


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
        for _attempt in range(5):
            try:
                row = await self._resolve_once(tenant_id, email, phone, name)
                break
            except _LostRace:  # another worker created this identity meanwhile: adopt it
                continue
        else:
            raise RuntimeError("identity resolution kept losing races")
        ref = CustomerRef(id=str(row["id"]), email=row["email"], phone=row["phone"])
        self._cache.set(cache_key, ref)
        return ref

    async def create_new(
        self, tenant_id: str, people: list[tuple[str | None, str | None, str | None]]
    ) -> int:
        """Create together the plainly new customers among `people` (email, phone, name), as
        `resolve` would one by one (kopilka.directory.new_customers), and keep them: `resolve`
        then answers for them without a round trip. How many were created."""
        todo = [(e, p, n) for e, p, n in people if (tenant_id, e, p) not in self._cache]
        if len(todo) < 2:  # one by one costs the same
            return 0
        made = await new_customers.create_new(self.pool, tenant_id, todo)
        for (email, phone), ref in made.items():
            self._cache.set((tenant_id, email, phone), ref)
        return len(made)

    async def _resolve_once(
        self, tenant_id: str, email: str | None, phone: str | None, name: str | None
    ) -> asyncpg.Record:
        """Find or create in one transaction. Two workers may resolve the same new customer at
        once (webhooks.raw spreads one shop over every partition): the identity's primary key
        lets one of them own each email and phone; the other, finding an identity it did not
        get, rolls back and tries again, and then finds the winner's customer."""
        tenant = uuid.UUID(tenant_id)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_FIND, tenant, email, phone)
            if not rows:
                customer_id = new_customer_id(tenant_id, (email, phone))
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
                    for other in owners - {customer_id}:
                        await conn.execute(
                            "INSERT INTO identity_conflicts (tenant_id, chosen_id, other_id,"
                            " email, phone) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                            tenant,
                            customer_id,
                            other,
                            email,
                            phone,
                        )
            known = {(r["kind"], r["value"]) for r in rows}
            for kind, value in (("email", email), ("phone", phone)):
                if value and (kind, value) not in known:
                    got = await conn.fetchval(
                        "INSERT INTO customer_identities (tenant_id, kind, value, customer_id)"
                        " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, kind, value)"
                        " DO NOTHING RETURNING true",
                        tenant,
                        kind,
                        value,
                        customer_id,
                    )
                    if not got:
                        raise _LostRace
            row = await conn.fetchrow(
                "UPDATE customers SET email = COALESCE(email, $2), phone = COALESCE(phone, $3),"
                " name = COALESCE(name, $4) WHERE id = $1 RETURNING id, email, phone",
                customer_id,
                email,
                phone,
                name,
            )
        return row

    async def find(self, tenant_id: str, kind: str, value: str) -> str | None:
        """The customer known by this identity (`code` = referral code), or None."""
        tenant = uuid.UUID(tenant_id)
        if kind == "code":
            row = await self.pool.fetchval(
                "SELECT id FROM customers WHERE tenant_id = $1 AND referral_code = $2",
                tenant,
                value,
            )
        else:
            row = await self.pool.fetchval(
                "SELECT customer_id FROM customer_identities"
                " WHERE tenant_id = $1 AND kind = $2 AND value = $3",
                tenant,
                kind,
                value,
            )
        return str(row) if row else None

    async def check_referrer(
        self, tenant_id: str, customer_id: str | None, kind: str, value: str
    ) -> str:
        """The referrer's id, or ReferralRefused: unknown, the customer itself, or a cycle."""
        referrer = await self.find(tenant_id, kind, value)
        if referrer is None:
            raise ReferralRefused("unknown_referrer", f"no customer has this referrer {kind}")
        if referrer == customer_id:
            raise ReferralRefused("self_referral", "a customer cannot refer themselves")
        if customer_id is not None:
            chain = await self.pool.fetch(
                """
                WITH RECURSIVE up(id, referrer_id, depth) AS (
                    SELECT id, referrer_id, 1 FROM customers WHERE id = $1 AND tenant_id = $2
                    UNION ALL
                    SELECT c.id, c.referrer_id, up.depth + 1
                    FROM customers c JOIN up ON c.id = up.referrer_id
                    WHERE up.depth < $3
                )
                SELECT id FROM up
                """,
                uuid.UUID(referrer),
                uuid.UUID(tenant_id),
                _MAX_CHAIN,
            )
            if any(str(r["id"]) == customer_id for r in chain):
                raise ReferralRefused(
                    "referral_cycle", "the referrer was (indirectly) referred by this customer"
                )
        return referrer

    async def register(
        self, tenant_id: str, customer_id: str, referrer_id: str | None
    ) -> tuple[str, str | None]:
        """Give the customer a referral code and referrer, once: (code, referrer) as stored."""
        tenant, customer = uuid.UUID(tenant_id), uuid.UUID(customer_id)
        for attempt in range(20):
            code = referral_code_for(tenant_id, customer_id, attempt)
            try:
                row = await self.pool.fetchrow(
                    "UPDATE customers SET referral_code = COALESCE(referral_code, $3),"
                    " referrer_id = CASE WHEN referral_code IS NULL THEN $4 ELSE referrer_id END"
                    " WHERE id = $1 AND tenant_id = $2 RETURNING referral_code, referrer_id",
                    customer,
                    tenant,
                    code,
                    uuid.UUID(referrer_id) if referrer_id else None,
                )
            except asyncpg.UniqueViolationError:
                continue
            referrer = row["referrer_id"]
            return row["referral_code"], str(referrer) if referrer else None
        raise RuntimeError("could not find a free referral code in 20 attempts")

    async def claim_order(self, tenant_id: str, order_id: str, customer_id: str) -> str:
        """The customer the order belongs to: this one, unless another claimed it first."""
        tenant = uuid.UUID(tenant_id)
        owner = None
        while owner is None:  # None: a concurrent claim committed after our snapshot; re-read
            owner = await self.pool.fetchval(
                "WITH claimed AS (INSERT INTO order_claims (tenant_id, order_id, customer_id)"
                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING customer_id)"
                " SELECT customer_id FROM claimed UNION ALL"
                " SELECT customer_id FROM order_claims WHERE tenant_id = $1 AND order_id = $2",
                tenant,
                order_id,
                uuid.UUID(customer_id),
            )
        return str(owner)

    async def claim_orders(self, tenant_id: str, claims: list[tuple[str, str]]) -> dict[str, str]:
        """Claim many (order_id, customer_id) at once: order_id -> the customer it belongs to.
        Within the list, the first claim of an order wins, as if claimed one by one."""
        if not claims:
            return {}
        rows = await self.pool.fetch(
            """
            WITH input AS (
                SELECT order_id, customer_id, n
                FROM unnest($2::text[], $3::uuid[]) WITH ORDINALITY AS u(order_id, customer_id, n)
            ), claimed AS (
                INSERT INTO order_claims (tenant_id, order_id, customer_id)
                SELECT DISTINCT ON (order_id) $1::uuid, order_id, customer_id
                FROM input ORDER BY order_id, n
                ON CONFLICT DO NOTHING
                RETURNING order_id, customer_id
            )
            SELECT order_id, customer_id FROM claimed
            UNION ALL
            SELECT o.order_id, o.customer_id FROM order_claims o
            WHERE o.tenant_id = $1 AND o.order_id = ANY($2::text[])
            """,
            uuid.UUID(tenant_id),
            [order for order, _ in claims],
            [uuid.UUID(customer) for _, customer in claims],
        )
        owners = {row["order_id"]: str(row["customer_id"]) for row in rows}
        missing = [order for order, _ in claims if order not in owners]
        for order in missing:  # claimed concurrently after our snapshot: read it one by one
            owners[order] = await self.claim_order(tenant_id, order, dict(claims)[order])
        return owners

    async def order_owner(self, tenant_id: str, order_id: str) -> CustomerRef | None:
        row = await self.pool.fetchrow(
            "SELECT c.id, c.email, c.phone FROM order_claims o JOIN customers c"
            " ON c.id = o.customer_id WHERE o.tenant_id = $1 AND o.order_id = $2",
            uuid.UUID(tenant_id),
            order_id,
        )
        return (
            CustomerRef(id=str(row["id"]), email=row["email"], phone=row["phone"]) if row else None
        )
