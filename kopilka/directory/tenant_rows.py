"""A tenant's row: the `Tenant` the rest of the code sees, created, read and its rules changed.

A tenant is its `tenants` row (name, active, edge settings), its `tenant_rules` row (the loyalty
rules and their revision) and its valid signing secrets. It is found by id or by the digest of a
credential (kopilka.directory.credentials), in one indexed query either way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg

from kopilka.directory.connection import one_connection
from kopilka.directory.credentials import (
    API_KEY_PREFIX,
    INSERT_CREDENTIAL,
    INSERT_SIGNING,
    SECRET_PREFIX,
    CredentialKind,
    digest,
    new_signing_secret,
    new_token,
)
from schemas.tenant_rules import TenantRules


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    active: bool
    rules: TenantRules
    rules_revision: int
    signature_mode: str = "off"
    rate_limit_per_minute: int | None = None
    rate_limit_burst: int | None = None
    max_body_bytes: int | None = None
    # Valid signing secrets (`whsec_…` strings), newest first; never printed by repr.
    signing_secrets: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Tenant:
        return cls(
            id=str(row["id"]),
            name=row["name"],
            active=row["active"],
            rules=TenantRules.model_validate_json(row["rules"]),
            rules_revision=row["revision"],
            signature_mode=row["signature_mode"],
            rate_limit_per_minute=row["rate_limit_per_minute"],
            rate_limit_burst=row["rate_limit_burst"],
            max_body_bytes=row["max_body_bytes"],
            signing_secrets=tuple(s.decode() for s in row["signing_secrets"] or ()),
        )

    @property
    def phone_region(self) -> str:
        return self.rules.phone_region

    def edge(self) -> dict[str, object]:
        """The edge settings as `kopilka tenants edge` shows them (no secrets)."""
        return {
            "signature_mode": self.signature_mode,
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "rate_limit_burst": self.rate_limit_burst,
            "max_body_bytes": self.max_body_bytes,
            "signing_secrets": len(self.signing_secrets),
        }


@dataclass(frozen=True)
class NewTenant:
    tenant: Tenant
    webhook_secret: str
    api_key: str
    signing_secret: str


_COLUMNS = (
    "t.id, t.name, t.active, r.rules::text AS rules, r.revision,"
    " t.signature_mode, t.rate_limit_per_minute, t.rate_limit_burst, t.max_body_bytes,"
    " ARRAY(SELECT s.secret FROM tenant_signing_secrets s WHERE s.tenant_id = t.id"
    " AND (s.expires_at IS NULL OR s.expires_at > now()) ORDER BY s.id DESC) AS signing_secrets"
)
_BY_CREDENTIAL = (
    f"SELECT {_COLUMNS} FROM tenant_credentials c JOIN tenants t ON t.id = c.tenant_id"  # noqa: S608
    " JOIN tenant_rules r ON r.tenant_id = t.id"
    " WHERE c.digest = $1 AND c.kind = $2 AND (c.expires_at IS NULL OR c.expires_at > now())"
)
_BY_ID = (
    f"SELECT {_COLUMNS} FROM tenants t JOIN tenant_rules r ON r.tenant_id = t.id"  # noqa: S608
    " WHERE t.id = $1"
)
_INSERT = (
    "INSERT INTO tenants (id, name, webhook_secret_hash, api_key_hash) VALUES ($1, $2, $3, $4)"
)
_INSERT_RULES = "INSERT INTO tenant_rules (tenant_id, rules) VALUES ($1, $2)"


async def create_tenant(
    pool: asyncpg.Pool | asyncpg.Connection, *, name: str, rules: TenantRules | None = None
) -> NewTenant:
    secret, api_key = new_token(SECRET_PREFIX), new_token(API_KEY_PREFIX)
    signing = new_signing_secret()
    tenant_id = uuid.uuid4()
    async with one_connection(pool) as conn, conn.transaction():
        await conn.execute(
            _INSERT,
            tenant_id,
            name,
            digest(secret),
            digest(api_key),
        )
        await conn.execute(
            _INSERT_RULES, tenant_id, (rules or TenantRules()).model_dump(mode="json")
        )
        await conn.execute(INSERT_CREDENTIAL, digest(secret), tenant_id, "webhook_secret")
        await conn.execute(INSERT_CREDENTIAL, digest(api_key), tenant_id, "api_key")
        await conn.execute(INSERT_SIGNING, tenant_id, signing.encode())
        row = await conn.fetchrow(_BY_ID, tenant_id)
    return NewTenant(Tenant.from_row(row), secret, api_key, signing)


async def update_rules(
    pool: asyncpg.Pool | asyncpg.Connection, tenant_id: str, changes: dict
) -> Tenant | None:
    """Apply `changes` (rule -> value, validated as a whole) and bump the revision."""
    async with one_connection(pool) as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT rules::text FROM tenant_rules WHERE tenant_id = $1 FOR UPDATE",
            uuid.UUID(tenant_id),
        )
        if row is None:
            return None
        merged = {**TenantRules.model_validate_json(row["rules"]).model_dump(), **changes}
        rules = TenantRules.model_validate(merged)
        await conn.execute(
            "UPDATE tenant_rules SET rules = $2, revision = revision + 1, updated_at = now()"
            " WHERE tenant_id = $1",
            uuid.UUID(tenant_id),
            rules.model_dump(mode="json"),
        )
        return await tenant_by_id(conn, tenant_id)


async def _lookup(conn, kind: CredentialKind, token: str) -> Tenant | None:
    row = await conn.fetchrow(_BY_CREDENTIAL, digest(token), kind)
    return Tenant.from_row(row) if row else None


async def tenant_by_secret(conn: asyncpg.Connection | asyncpg.Pool, secret: str) -> Tenant | None:
    return await _lookup(conn, "webhook_secret", secret)


async def tenant_by_api_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> Tenant | None:
    return await _lookup(conn, "api_key", key)


async def tenant_by_id(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str) -> Tenant | None:
    try:
        key = uuid.UUID(tenant_id)
    except ValueError:
        return None
    row = await conn.fetchrow(_BY_ID, key)
    return Tenant.from_row(row) if row else None
