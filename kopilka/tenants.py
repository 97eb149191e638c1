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
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from kopilka.cache import TTLCache

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
    base_percent: Decimal
    bonus_ttl_days: int
    rounding: str
    phone_region: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Tenant:
        return cls(
            id=str(row["id"]),
            name=row["name"],
            active=row["active"],
            base_percent=row["base_percent"],
            bonus_ttl_days=row["bonus_ttl_days"],
            rounding=row["rounding"],
            phone_region=row["phone_region"],
        )

    def rules(self) -> dict[str, str | int]:
        """The rules a command carries, so that re-processing it gives the same result."""
        return {
            "base_percent": str(self.base_percent),
            "bonus_ttl_days": self.bonus_ttl_days,
            "rounding": self.rounding,
        }


@dataclass(frozen=True)
class NewTenant:
    tenant: Tenant
    webhook_secret: str
    api_key: str


_COLUMNS = "id, name, active, base_percent, bonus_ttl_days, rounding, phone_region"
_INSERT = (
    "INSERT INTO tenants (id, name, webhook_secret_hash, api_key_hash, base_percent,"  # noqa: S608
    " bonus_ttl_days, phone_region) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING " + _COLUMNS
)
_SELECT = f"SELECT {_COLUMNS} FROM tenants WHERE"  # noqa: S608 - constant column list


async def create_tenant(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    name: str,
    base_percent: Decimal = Decimal(5),
    bonus_ttl_days: int = 365,
    phone_region: str = "RU",
) -> NewTenant:
    secret, api_key = new_token(SECRET_PREFIX), new_token(API_KEY_PREFIX)
    row = await conn.fetchrow(
        _INSERT,
        uuid.uuid4(),
        name,
        digest(secret),
        digest(api_key),
        base_percent,
        bonus_ttl_days,
        phone_region.upper(),
    )
    return NewTenant(Tenant.from_row(row), secret, api_key)


async def tenant_by_secret(conn: asyncpg.Connection | asyncpg.Pool, secret: str) -> Tenant | None:
    row = await conn.fetchrow(_SELECT + " webhook_secret_hash = $1", digest(secret))
    return Tenant.from_row(row) if row else None


async def tenant_by_api_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> Tenant | None:
    row = await conn.fetchrow(_SELECT + " api_key_hash = $1", digest(key))
    return Tenant.from_row(row) if row else None


async def tenant_by_id(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str) -> Tenant | None:
    row = await conn.fetchrow(_SELECT + " id = $1", uuid.UUID(tenant_id))
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
