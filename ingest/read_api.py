"""`GET /api/v1/customers?email=…|phone=…`: a customer's balance and ledger, for one tenant.

Authenticated with the tenant's API key (`Authorization: Bearer …`). Every query is scoped by the
key's tenant id, so another tenant's customer is simply not found (404).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiohttp import web

from ingest.context import POOL, TENANTS
from ingest.responses import error, json_response
from kopilka.core.db import DATABASE_DOWN
from kopilka.core.logging import get_logger
from kopilka.directory.tenants import Tenant
from schemas.identity import normalize_email, normalize_phone

log = get_logger(__name__)
_RETRY = {"Retry-After": "5"}

_CUSTOMER = """
SELECT c.id, c.email, c.phone, c.name, c.created_at, c.referral_code, c.referrer_id,
       COALESCE(b.lifetime_spend, 0) AS lifetime_spend, b.level
FROM customer_identities i
JOIN customers c ON c.id = i.customer_id
LEFT JOIN balances b ON b.tenant_id = i.tenant_id AND b.customer_id = c.id
WHERE i.tenant_id = $1 AND i.kind = $2 AND i.value = $3
"""
_LEDGER = """
SELECT event_id, type, order_id, amount, delta, balance_after, reason, expires_at, occurred_at
FROM ledger_entries WHERE tenant_id = $1 AND customer_id = $2
ORDER BY occurred_at DESC, (event->>'seq')::bigint DESC LIMIT $3
"""
_BALANCE = """
SELECT COALESCE(SUM(remaining) FILTER (WHERE available_at <= $3), 0)::bigint AS active,
       COALESCE(SUM(remaining) FILTER (WHERE available_at > $3), 0)::bigint AS pending,
       COALESCE(SUM(remaining) FILTER (WHERE expires_at <= $3 + interval '30 days'), 0)::bigint
           AS expiring_30d,
       MIN(expires_at) AS next_expiry
FROM lots WHERE tenant_id = $1 AND customer_id = $2 AND remaining > 0 AND expires_at > $3
"""


def _plain(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is not None and not isinstance(value, int | str | bool):
        return format(value, "f")  # Decimal -> exact string
    return value


async def get_customer(request: web.Request) -> web.Response:
    try:
        return await _get_customer(request)
    except DATABASE_DOWN as exc:
        log.error("read_api_unavailable", error=type(exc).__name__)
        return error(503, "unavailable", "the database is unavailable, retry later", headers=_RETRY)


class MissingIdentity(Exception):
    """Neither an email nor a phone was given."""


def identity(email: str | None, phone: str | None, region: str) -> tuple[str, str]:
    """(kind, normalised value) of the identity a query names; ValueError naming what is wrong,
    MissingIdentity when neither is given."""
    if email:
        return "email", normalize_email(email)
    if phone:
        return "phone", normalize_phone(phone, region)
    raise MissingIdentity


async def customer_view(pool, tenant: Tenant, kind: str, value: str, limit: int) -> dict | None:
    """The read API's answer for one customer of `tenant` (None when there is none): identity,
    balance split, level with the progress to the next one, and the newest ledger entries.
    Shared by `GET /api/v1/customers` and the shop's dashboard."""
    tenant_id = uuid.UUID(tenant.id)
    row = await pool.fetchrow(_CUSTOMER, tenant_id, kind, value)
    if row is None:
        return None
    now = datetime.now(UTC)
    split = await pool.fetchrow(_BALANCE, tenant_id, row["id"], now)
    entries = await pool.fetch(_LEDGER, tenant_id, row["id"], limit)
    lifetime = row["lifetime_spend"]
    rules = tenant.rules
    current = rules.level_for(lifetime)
    upcoming = rules.next_level(lifetime)
    customer_fields = ("id", "email", "phone", "name", "created_at", "referral_code", "referrer_id")
    return {
        "customer": {k: _plain(row[k]) for k in customer_fields},
        "balance": {
            "total": split["active"] + split["pending"],
            "active": split["active"],
            "pending": split["pending"],
            "expiring_30d": split["expiring_30d"],
            "next_expiry": _plain(split["next_expiry"]),
        },
        "level": {
            "name": current.name if current else None,
            "percent": _plain(rules.base_percent + (current.bonus_percent if current else 0)),
            "lifetime_spend": _plain(lifetime),
            "next": None
            if upcoming is None
            else {
                "name": upcoming.name,
                "min_lifetime_spend": _plain(upcoming.min_lifetime_spend),
                "spend_to_reach": _plain(upcoming.min_lifetime_spend - lifetime),
            },
        },
        "ledger": [{k: _plain(v) for k, v in entry.items()} for entry in entries],
    }


async def bearer_tenant(request: web.Request):
    """The tenant whose API key the request carries (`Authorization: Bearer …`), or the 401 to
    answer: the read API's and the event stream's one check."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return error(
            401,
            "unauthorized",
            "send the tenant's API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant = await request.app[TENANTS].by_api_key(key.strip())
    if tenant is None:
        return error(401, "unauthorized", "unknown API key", headers={"WWW-Authenticate": "Bearer"})
    return tenant


async def _get_customer(request: web.Request) -> web.Response:
    tenant = await bearer_tenant(request)
    if isinstance(tenant, web.Response):
        return tenant

    email, phone = request.query.get("email"), request.query.get("phone")
    try:
        kind, value = identity(email, phone, tenant.phone_region)
    except MissingIdentity:
        return error(400, "missing_field", "give ?email= or ?phone=", "email")
    except ValueError as exc:
        return error(400, "invalid_field", str(exc), "email" if email else "phone")
    try:
        limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
    except ValueError:
        return error(400, "invalid_field", "limit must be an integer", "limit")

    view = await customer_view(request.app[POOL], tenant, kind, value, limit)
    if view is None:
        return error(404, "customer_not_found", f"no customer with this {kind}", kind)
    return json_response(view)
