"""`GET /api/v1/customers?email=…|phone=…`: a customer's balance and ledger, for one tenant.

Authenticated with the tenant's API key (`Authorization: Bearer …`). Every query is scoped by the
key's tenant id, so another tenant's customer is simply not found (404).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from ingest.context import POOL, TENANTS
from ingest.responses import error, json_response
from schemas.identity import normalize_email, normalize_phone

_CUSTOMER = """
SELECT c.id, c.email, c.phone, c.name, c.created_at,
       COALESCE(b.balance, 0) AS balance, COALESCE(b.lifetime_spend, 0) AS lifetime_spend
FROM customer_identities i
JOIN customers c ON c.id = i.customer_id
LEFT JOIN balances b ON b.tenant_id = i.tenant_id AND b.customer_id = c.id
WHERE i.tenant_id = $1 AND i.kind = $2 AND i.value = $3
"""
_LEDGER = """
SELECT event_id, type, order_id, amount, points, balance_after, expires_at, occurred_at
FROM ledger_entries WHERE tenant_id = $1 AND customer_id = $2
ORDER BY occurred_at DESC, recorded_at DESC LIMIT $3
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
    auth = request.headers.get("Authorization", "")
    scheme, _, key = auth.partition(" ")
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

    email, phone = request.query.get("email"), request.query.get("phone")
    try:
        if email:
            kind, value = "email", normalize_email(email)
        elif phone:
            kind, value = "phone", normalize_phone(phone, tenant.phone_region)
        else:
            return error(400, "missing_field", "give ?email= or ?phone=", "email")
    except ValueError as exc:
        return error(400, "invalid_field", str(exc), "email" if email else "phone")
    try:
        limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
    except ValueError:
        return error(400, "invalid_field", "limit must be an integer", "limit")

    pool = request.app[POOL]
    tenant_id = uuid.UUID(tenant.id)
    row = await pool.fetchrow(_CUSTOMER, tenant_id, kind, value)
    if row is None:
        return error(404, "customer_not_found", f"no customer with this {kind}", kind)
    entries = await pool.fetch(_LEDGER, tenant_id, row["id"], limit)
    return json_response(
        {
            "customer": {k: _plain(row[k]) for k in ("id", "email", "phone", "name", "created_at")},
            "balance": row["balance"],
            "lifetime_spend": _plain(row["lifetime_spend"]),
            "ledger": [{k: _plain(v) for k, v in entry.items()} for entry in entries],
        }
    )
