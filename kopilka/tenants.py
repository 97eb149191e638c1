"""Tenants: creation with freshly generated credentials, and look-ups by credential.

Webhook secrets and API keys are 192-bit random tokens, shown once at creation and stored only
as SHA-256 digests. A slow password hash buys nothing for tokens of that entropy; the digest makes
the look-up an indexed equality on a value an attacker cannot steer, so the time it takes says
nothing about how close a guess was.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from kopilka.cache import TTLCache
from schemas.tenant_rules import TenantRules

SECRET_PREFIX = "whk_"  # noqa: S105 - a prefix, not a secret
API_KEY_PREFIX = "kpk_"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(24)  # 24 bytes = 192 bits


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    active: bool
    rules: TenantRules
    rules_revision: int

    @property
    def phone_region(self) -> str:
        return self.rules.phone_region

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Tenant:
        return cls(
            id=str(row["id"]),
            name=row["name"],
            active=row["active"],
            rules=TenantRules.model_validate_json(row["rules"]),
            rules_revision=row["revision"],
        )


@dataclass(frozen=True)
class NewTenant:
    tenant: Tenant
    webhook_secret: str
    api_key: str


_SELECT = (
    "SELECT t.id, t.name, t.active, r.rules::text AS rules, r.revision"
    " FROM tenants t JOIN tenant_rules r ON r.tenant_id = t.id WHERE"
)


async def create_tenant(
    conn: asyncpg.Connection | asyncpg.Pool, *, name: str, rules: TenantRules | None = None
) -> NewTenant:
    secret, api_key = new_token(SECRET_PREFIX), new_token(API_KEY_PREFIX)
    tenant_id = uuid.uuid4()
    rules = rules or TenantRules()
    async with _connection(conn) as c, c.transaction():
        await c.execute(
            "INSERT INTO tenants (id, name, webhook_secret_hash, api_key_hash)"
            " VALUES ($1, $2, $3, $4)",
            tenant_id,
            name,
            digest(secret),
            digest(api_key),
        )
        await c.execute(
            "INSERT INTO tenant_rules (tenant_id, rules) VALUES ($1, $2)",
            tenant_id,
            rules.model_dump(mode="json"),
        )
        tenant = await tenant_by_id(c, str(tenant_id))
    return NewTenant(tenant, secret, api_key)


async def update_rules(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, changes: dict
) -> Tenant | None:
    """Apply `changes` (field -> value, validated as a whole) and bump the revision."""
    async with _connection(conn) as c, c.transaction():
        row = await c.fetchrow(
            "SELECT rules::text FROM tenant_rules WHERE tenant_id = $1 FOR UPDATE",
            uuid.UUID(tenant_id),
        )
        if row is None:
            return None
        merged = {**TenantRules.model_validate_json(row["rules"]).model_dump(), **changes}
        rules = TenantRules.model_validate(merged)
        await c.execute(
            "UPDATE tenant_rules SET rules = $2, revision = revision + 1, updated_at = now()"
            " WHERE tenant_id = $1",
            uuid.UUID(tenant_id),
            rules.model_dump(mode="json"),
        )
        return await tenant_by_id(c, tenant_id)


@asynccontextmanager
async def _connection(conn: asyncpg.Connection | asyncpg.Pool):
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            yield c
    else:
        yield conn


async def tenant_by_secret(conn: asyncpg.Connection | asyncpg.Pool, secret: str) -> Tenant | None:
    row = await conn.fetchrow(_SELECT + " t.webhook_secret_hash = $1", digest(secret))
    return Tenant.from_row(row) if row else None


async def tenant_by_api_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> Tenant | None:
    row = await conn.fetchrow(_SELECT + " t.api_key_hash = $1", digest(key))
    return Tenant.from_row(row) if row else None


async def tenant_by_id(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str) -> Tenant | None:
    row = await conn.fetchrow(_SELECT + " t.id = $1", uuid.UUID(tenant_id))
    return Tenant.from_row(row) if row else None


class TenantDirectory:
    """Cached tenant look-ups for the hot paths; a change is seen within `ttl_s` seconds."""

    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 5.0, maxsize: int = 10_000) -> None:
        self.pool = pool
        self._by_digest: TTLCache[tuple[str, bytes], Tenant | None] = TTLCache(maxsize, ttl_s)
        self._by_id: TTLCache[str, Tenant | None] = TTLCache(maxsize, ttl_s)

    async def _cached(self, cache: TTLCache, key, load) -> Tenant | None:
        hit = cache.get(key, _MISS)
        if hit is not _MISS:
            return hit
        tenant = await load()
        cache.set(key, tenant)
        return tenant

    async def by_secret(self, secret: str) -> Tenant | None:
        return await self._cached(
            self._by_digest, ("secret", digest(secret)), lambda: tenant_by_secret(self.pool, secret)
        )

    async def by_api_key(self, key: str) -> Tenant | None:
        return await self._cached(
            self._by_digest, ("api_key", digest(key)), lambda: tenant_by_api_key(self.pool, key)
        )

    async def by_id(self, tenant_id: str) -> Tenant | None:
        return await self._cached(
            self._by_id, tenant_id, lambda: tenant_by_id(self.pool, tenant_id)
        )


_MISS = object()
