"""A tenant's edge settings: signature mode, rate limit, body cap, as the ingress applies them.

They are columns of `tenants`; NULL means the deployment's default.
"""

from __future__ import annotations

import uuid

import asyncpg

from kopilka.directory.tenant_rows import Tenant, tenant_by_id

SIGNATURE_MODES = ("off", "optional", "required")
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
