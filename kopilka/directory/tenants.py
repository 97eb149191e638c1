"""Tenants (the shops): the names the rest of the code imports, from the modules doing each job.

- kopilka.directory.tenant_rows: the `Tenant` row and its rules; create, look up, change rules;
- kopilka.directory.credentials: webhook secrets, API keys and signing secrets; their rotation;
- kopilka.directory.edge_settings: signature mode, rate limit, body cap;
- kopilka.directory.tenant_cache: `TenantDirectory`, the cached look-ups of the hot paths.
"""

from kopilka.directory.credentials import (
    API_KEY_PREFIX,
    ROTATABLE,
    SECRET_PREFIX,
    SIGNING_PREFIX,
    CredentialKind,
    Rotatable,
    digest,
    new_signing_secret,
    new_token,
    rotate,
)
from kopilka.directory.edge_settings import EDGE_SETTINGS, SIGNATURE_MODES, set_edge
from kopilka.directory.tenant_cache import DATABASE_DOWN, DirectoryUnavailable, TenantDirectory
from kopilka.directory.tenant_rows import (
    NewTenant,
    Tenant,
    create_tenant,
    tenant_by_api_key,
    tenant_by_id,
    tenant_by_secret,
    update_rules,
)

__all__ = [
    "API_KEY_PREFIX",
    "DATABASE_DOWN",
    "EDGE_SETTINGS",
    "ROTATABLE",
    "SECRET_PREFIX",
    "SIGNATURE_MODES",
    "SIGNING_PREFIX",
    "CredentialKind",
    "DirectoryUnavailable",
    "NewTenant",
    "Rotatable",
    "Tenant",
    "TenantDirectory",
    "create_tenant",
    "digest",
    "new_signing_secret",
    "new_token",
    "rotate",
    "set_edge",
    "tenant_by_api_key",
    "tenant_by_id",
    "tenant_by_secret",
    "update_rules",
]
