"""Tenants: creation with freshly generated credentials, look-ups by credential, rotation.

Webhook secrets and API keys are 192-bit random tokens, shown once and stored only as SHA-256
digests in `tenant_credentials`. A slow password hash buys nothing for tokens of that entropy; the
digest makes the look-up an indexed equality on a value an attacker cannot steer, so the time it
takes says nothing about how close a guess was. Rotation adds a new credential and gives the old
one an expiry (the grace period); after it, the old one is simply not found.

Signing secrets (`whsec_…`, for request signatures) are HMAC keys, so they are kept as they are,
never logged, and rotated the same way. Edge settings (signature mode, rate limit, body cap) are
columns of `tenants`; NULL means the deployment's default.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import asyncpg

from kopilka.core import standard_webhooks
from kopilka.core.cache import TTLCache
from kopilka.core.logging import get_logger
from schemas.tenant_rules import TenantRules

SECRET_PREFIX = "whk_"  # noqa: S105 - a prefix, not a secret
API_KEY_PREFIX = "kpk_"
SIGNING_PREFIX = standard_webhooks.PREFIX
SIGNATURE_MODES = ("off", "optional", "required")

CredentialKind = Literal["webhook_secret", "api_key"]
Rotatable = Literal["webhook_secret", "api_key", "signing_secret"]
ROTATABLE: tuple[Rotatable, ...] = ("webhook_secret", "api_key", "signing_secret")

log = get_logger(__name__)


def digest(token: str) -> bytes:
    # surrogatepass: a URL or header that is not valid UTF-8 is just another unknown token
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(24)  # 24 bytes = 192 bits


def new_signing_secret() -> str:
    return standard_webhooks.new_secret()


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
_INSERT_CREDENTIAL = "INSERT INTO tenant_credentials (digest, tenant_id, kind) VALUES ($1, $2, $3)"
_INSERT_SIGNING = "INSERT INTO tenant_signing_secrets (tenant_id, secret) VALUES ($1, $2)"


async def create_tenant(
    pool: asyncpg.Pool | asyncpg.Connection, *, name: str, rules: TenantRules | None = None
) -> NewTenant:
    secret, api_key = new_token(SECRET_PREFIX), new_token(API_KEY_PREFIX)
    signing = new_signing_secret()
    tenant_id = uuid.uuid4()
    async with _connection(pool) as conn, conn.transaction():
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
        await conn.execute(_INSERT_CREDENTIAL, digest(secret), tenant_id, "webhook_secret")
        await conn.execute(_INSERT_CREDENTIAL, digest(api_key), tenant_id, "api_key")
        await conn.execute(_INSERT_SIGNING, tenant_id, signing.encode())
        row = await conn.fetchrow(_BY_ID, tenant_id)
    return NewTenant(Tenant.from_row(row), secret, api_key, signing)


async def update_rules(
    pool: asyncpg.Pool | asyncpg.Connection, tenant_id: str, changes: dict
) -> Tenant | None:
    """Apply `changes` (rule -> value, validated as a whole) and bump the revision."""
    async with _connection(pool) as conn, conn.transaction():
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


# ----------------------------------------------------------------------------------- rotation

_EXPIRE_CREDENTIALS = (
    "UPDATE tenant_credentials SET expires_at = now() + $3::interval"
    " WHERE tenant_id = $1 AND kind = $2"
    " AND (expires_at IS NULL OR expires_at > now() + $3::interval)"
)
_EXPIRE_SIGNING = (
    "UPDATE tenant_signing_secrets SET expires_at = now() + $2::interval"
    " WHERE tenant_id = $1"
    " AND (expires_at IS NULL OR expires_at > now() + $2::interval)"
)
_CURRENT_COLUMN = {"webhook_secret": "webhook_secret_hash", "api_key": "api_key_hash"}


async def rotate(
    pool: asyncpg.Pool | asyncpg.Connection,
    tenant_id: str,
    *,
    grace: timedelta,
    what: tuple[Rotatable, ...] = ROTATABLE,
) -> dict[str, str] | None:
    """Issue new credentials; the current ones keep working for `grace`, then stop.

    Returns the new tokens by kind (shown once), or None when the tenant does not exist. A
    credential already due to expire sooner than the grace period keeps its earlier expiry.
    """
    tid = uuid.UUID(tenant_id)
    issued: dict[str, str] = {}
    async with _connection(pool) as conn, conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tid):
            return None
        for kind in what:
            if kind == "signing_secret":
                token = new_signing_secret()
                await conn.execute(_EXPIRE_SIGNING, tid, grace)
                await conn.execute(_INSERT_SIGNING, tid, token.encode())
            else:
                token = new_token(SECRET_PREFIX if kind == "webhook_secret" else API_KEY_PREFIX)
                await conn.execute(_EXPIRE_CREDENTIALS, tid, kind, grace)
                await conn.execute(_INSERT_CREDENTIAL, digest(token), tid, kind)
                await conn.execute(
                    f"UPDATE tenants SET {_CURRENT_COLUMN[kind]} = $2 WHERE id = $1",  # noqa: S608
                    tid,
                    digest(token),
                )
            issued[kind] = token
    return issued


# ------------------------------------------------------------------------------ edge settings

EDGE_SETTINGS = ("signature_mode", "rate_limit_per_minute", "rate_limit_burst", "max_body_bytes")


async def set_edge(
    pool: asyncpg.Pool | asyncpg.Connection, tenant_id: str, **changes: str | int | None
) -> Tenant | None:
    """Change some of a tenant's edge settings (None = the deployment's default); the tenant."""
    unknown = set(changes) - set(EDGE_SETTINGS)
    if unknown:
        raise ValueError(f"not edge settings: {', '.join(sorted(unknown))}")
    mode = changes.get("signature_mode")
    if "signature_mode" in changes and mode not in SIGNATURE_MODES:
        raise ValueError(f"signature mode must be one of {', '.join(SIGNATURE_MODES)}")
    if changes:
        assignments = ", ".join(f"{col} = ${i}" for i, col in enumerate(changes, start=2))
        await pool.execute(
            f"UPDATE tenants SET {assignments} WHERE id = $1",  # noqa: S608 - checked names
            uuid.UUID(tenant_id),
            *changes.values(),
        )
    return await tenant_by_id(pool, tenant_id)


class _connection:
    """`async with` one connection, whether given a pool or a connection."""

    def __init__(self, pool_or_conn) -> None:
        self.source, self._pooled = pool_or_conn, None

    async def __aenter__(self) -> asyncpg.Connection:
        if isinstance(self.source, asyncpg.Pool):
            self._pooled = await self.source.acquire()
            return self._pooled
        return self.source

    async def __aexit__(self, *exc) -> None:
        if self._pooled is not None:
            await self.source.release(self._pooled)


class DirectoryUnavailable(ConnectionError):
    """The database could not answer and nothing is cached for this key: retry later.

    A ConnectionError, so every retry policy that knows connection loss retries it."""


# What "the database could not answer" looks like; anything else is a bug and propagates.
DATABASE_DOWN = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class TenantDirectory:
    """Cached tenant look-ups for the hot paths; a change is seen within `ttl_s` seconds.

    Known tenants and unknown credentials are kept apart, so a flood of guessed secrets cannot
    push real shops out: known tenants in one bounded LRU, kept for `stale_s` and served *stale*
    when the database cannot answer (a known shop needs only Kafka to be accepted); unknown keys
    in their own small LRU for `negative_ttl_s` (short: a new shop is found within it).

    After a failed query the database is not asked again for `backoff_s`: meanwhile known
    tenants are served from cache at once and unknown keys raise DirectoryUnavailable.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        ttl_s: float = 5.0,
        maxsize: int = 10_000,
        *,
        stale_s: float = 24 * 3600.0,
        negative_ttl_s: float = 2.0,
        negative_maxsize: int = 10_000,
        timeout_s: float | None = None,
        backoff_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self.ttl_s, self.timeout_s, self.backoff_s = ttl_s, timeout_s, backoff_s
        # key -> (monotonic time it was loaded, tenant)
        self._known: TTLCache[tuple, tuple[float, Tenant]] = TTLCache(maxsize, max(stale_s, ttl_s))
        self._unknown: TTLCache[tuple, bool] = TTLCache(negative_maxsize, negative_ttl_s)
        self._down_until = -math.inf
        self._loading: dict[tuple, asyncio.Future] = {}
        self.stale_served = 0

    def knows(self, key: tuple) -> bool:
        """Whether `key` names a tenant seen recently (fresh or stale): no query is needed to
        answer it while the database is down."""
        return self._known.get(key) is not None

    async def _cached(self, key: tuple, load) -> Tenant | None:
        entry = self._known.get(key)
        now = time.monotonic()
        if entry is not None and now - entry[0] < self.ttl_s:
            return entry[1]
        if entry is None and self._unknown.get(key):
            return None
        if now < self._down_until:
            return self._stale(key, entry, "recently_down")
        # one query per key at a time: the requests that find it expired meanwhile share it
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key, entry, load))
            self._loading[key] = loading
            loading.add_done_callback(lambda _done: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _load(self, key: tuple, entry: tuple[float, Tenant] | None, load) -> Tenant | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                tenant = await load()
        except DATABASE_DOWN as exc:
            self._down_until = time.monotonic() + self.backoff_s
            return self._stale(key, entry, type(exc).__name__)
        if tenant is None:
            self._known.pop(key)
            self._unknown.set(key, True)
        else:
            self._unknown.pop(key)
            self._known.set(key, (time.monotonic(), tenant))
        return tenant

    def _stale(self, key: tuple, entry: tuple[float, Tenant] | None, why: str) -> Tenant:
        if entry is None:
            raise DirectoryUnavailable(why)
        self.stale_served += 1
        if self.stale_served == 1 or self.stale_served % 1000 == 0:
            log.warning(
                "tenant_served_stale",
                tenant_id=entry[1].id,
                age_s=round(time.monotonic() - entry[0], 1),
                error=why,
                stale_served=self.stale_served,
            )
        return entry[1]

    @staticmethod
    def secret_key(secret: str) -> tuple:
        return ("secret", digest(secret))

    async def by_secret(self, secret: str) -> Tenant | None:
        return await self._cached(
            self.secret_key(secret), lambda: tenant_by_secret(self.pool, secret)
        )

    async def by_api_key(self, key: str) -> Tenant | None:
        return await self._cached(
            ("api_key", digest(key)), lambda: tenant_by_api_key(self.pool, key)
        )

    async def by_id(self, tenant_id: str) -> Tenant | None:
        return await self._cached(("id", tenant_id), lambda: tenant_by_id(self.pool, tenant_id))
