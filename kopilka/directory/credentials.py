"""A tenant's credentials: how they are made, how they are stored, how they are rotated.

Webhook secrets and API keys are 192-bit random tokens, shown once and stored only as SHA-256
digests in `tenant_credentials`. A slow password hash buys nothing for tokens of that entropy; the
digest makes the look-up an indexed equality on a value an attacker cannot steer, so the time it
takes says nothing about how close a guess was. Rotation adds a new credential and gives the old
one an expiry (the grace period); after it, the old one is simply not found.

Signing secrets (`whsec_…`, for request signatures) are HMAC keys, so they are kept as they are,
never logged, and rotated the same way.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta
from typing import Literal

import asyncpg

from kopilka.core import standard_webhooks
from kopilka.directory.connection import one_connection

SECRET_PREFIX = "whk_"  # noqa: S105 - a prefix, not a secret
API_KEY_PREFIX = "kpk_"
SIGNING_PREFIX = standard_webhooks.PREFIX

CredentialKind = Literal["webhook_secret", "api_key"]
Rotatable = Literal["webhook_secret", "api_key", "signing_secret"]
ROTATABLE: tuple[Rotatable, ...] = ("webhook_secret", "api_key", "signing_secret")

INSERT_CREDENTIAL = "INSERT INTO tenant_credentials (digest, tenant_id, kind) VALUES ($1, $2, $3)"
INSERT_SIGNING = "INSERT INTO tenant_signing_secrets (tenant_id, secret) VALUES ($1, $2)"


def digest(token: str) -> bytes:
    # surrogatepass: a URL or header that is not valid UTF-8 is just another unknown token
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(24)  # 24 bytes = 192 bits


def new_signing_secret() -> str:
    return standard_webhooks.new_secret()


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
    async with one_connection(pool) as conn, conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tid):
            return None
        for kind in what:
            if kind == "signing_secret":
                token = new_signing_secret()
                await conn.execute(_EXPIRE_SIGNING, tid, grace)
                await conn.execute(INSERT_SIGNING, tid, token.encode())
            else:
                token = new_token(SECRET_PREFIX if kind == "webhook_secret" else API_KEY_PREFIX)
                await conn.execute(_EXPIRE_CREDENTIALS, tid, kind, grace)
                await conn.execute(INSERT_CREDENTIAL, digest(token), tid, kind)
                await conn.execute(
                    f"UPDATE tenants SET {_CURRENT_COLUMN[kind]} = $2 WHERE id = $1",  # noqa: S608
                    tid,
                    digest(token),
                )
            issued[kind] = token
    return issued
