"""The dashboard's own reads (everything scoped by the signed-in shop's id).

Customers come from the read API's `customer_view`, outbound endpoints, deliveries, attempts and
Telegram chats from kopilka.directory.subscriptions; here is only what nothing else reads: the
webhook audit, a referrer's identity, and the two charts' series.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

AUDIT_STATUSES = ("accepted", "rejected", "dead")

_AUDIT = """
SELECT event_id, received_at, status, http_status, code, field, reason, content_type, body_bytes
FROM webhook_audit WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
ORDER BY received_at DESC LIMIT $3
"""
_REFERRER = """
SELECT email, phone, name, referral_code FROM customers WHERE tenant_id = $1 AND id = $2
"""
# Points per day in the shop's time zone: awards (own and referral) and spends.
_POINTS_PER_DAY = """
SELECT (occurred_at AT TIME ZONE $3)::date AS day,
       COALESCE(SUM(points) FILTER (WHERE type IN ('bonus_awarded', 'referral_awarded')), 0)
           ::bigint AS awarded,
       COALESCE(SUM(points) FILTER (WHERE type = 'bonus_spent'), 0)::bigint AS spent
FROM ledger_entries
WHERE tenant_id = $1 AND occurred_at >= $2 AND type IN ('bonus_awarded', 'referral_awarded',
                                                        'bonus_spent')
GROUP BY day ORDER BY day
"""
_PER_LEVEL = """
SELECT b.level, count(*)::bigint AS customers
FROM customers c LEFT JOIN balances b ON b.tenant_id = c.tenant_id AND b.customer_id = c.id
WHERE c.tenant_id = $1 GROUP BY b.level
"""


async def recent_webhooks(
    pool: asyncpg.Pool, tenant_id: str, status: str | None, limit: int = 100
) -> list[asyncpg.Record]:
    return await pool.fetch(_AUDIT, uuid.UUID(tenant_id), status, limit)


async def referrer(pool: asyncpg.Pool, tenant_id: str, customer_id: str | None):
    if not customer_id:
        return None
    return await pool.fetchrow(_REFERRER, uuid.UUID(tenant_id), uuid.UUID(customer_id))


async def points_per_day(
    pool: asyncpg.Pool, tenant_id: str, zone: str, today: date, days: int = 30
) -> list[tuple[date, int, int]]:
    """(day, awarded, spent) for each of the last `days` days up to `today`, zeros included."""
    first = today - timedelta(days=days - 1)
    rows = await pool.fetch(_POINTS_PER_DAY, uuid.UUID(tenant_id), _midnight_before(first), zone)
    found = {r["day"]: (r["awarded"], r["spent"]) for r in rows}
    return [
        (day, *found.get(day, (0, 0))) for day in (first + timedelta(days=i) for i in range(days))
    ]


def _midnight_before(day: date) -> datetime:
    # a day early in UTC covers the first local day in any zone; the days before are dropped
    return datetime.combine(day - timedelta(days=1), time(), tzinfo=UTC)


async def customers_per_level(
    pool: asyncpg.Pool, tenant_id: str, level_names: list[str]
) -> list[tuple[str | None, int]]:
    """(level name or None for no level, customers) in the rules' order, no level first."""
    rows = await pool.fetch(_PER_LEVEL, uuid.UUID(tenant_id))
    counts = {r["level"]: r["customers"] for r in rows}
    ordered = [(None, counts.pop(None, 0))] + [(n, counts.pop(n, 0)) for n in level_names]
    return ordered + sorted(counts.items())  # levels no longer in the rules, by name
