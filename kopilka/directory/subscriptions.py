"""Who wants which events: a tenant's webhook endpoints and Telegram chats, and their upkeep.

One module for the configuration that the CLI, the admin API, the stream fan-out and the
dispatcher share. Event types are plain strings (`bonus_awarded`, ...): a type the engine adds
later needs no change here. An empty list of types means every type.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg

from kopilka.core.cache import TTLCache
from kopilka.core.standard_webhooks import new_secret
from schemas.telegram_text import check_template

Conn = asyncpg.Connection | asyncpg.Pool
WAKE_CHANNEL = "kopilka_outbound"  # NOTIFY channel: new or redelivered work for `dispatch`
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class InvalidConfig(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def event_types(values: list[str] | str | None) -> list[str]:
    """Normalise a list (or comma-separated string) of event types; `*` or nothing = all."""
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(",")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidConfig("event_types", "must be a list of event type names")
    out = sorted({v.strip() for v in values if v.strip()})
    if "*" in out:
        return []
    for value in out:
        if not _TYPE.match(value):
            raise InvalidConfig("event_types", f"{value!r} is not an event type name")
    return out


def wants(types: list[str], event_type: str) -> bool:
    return not types or event_type in types


def check_url(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise InvalidConfig("url", "required: the shop's callback URL")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidConfig("url", "must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise InvalidConfig("url", "must not carry credentials; deliveries are signed instead")
    if len(url) > 2000:
        raise InvalidConfig("url", "longer than 2000 characters")
    return url


def _uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise InvalidConfig(field, "not a UUID") from exc


async def _tenant_exists(conn: Conn, tenant_id: uuid.UUID) -> None:
    if not await conn.fetchval("SELECT true FROM tenants WHERE id = $1", tenant_id):
        raise InvalidConfig("tenant_id", "no such tenant")


# ----------------------------------------------------------------------------- endpoints
_ENDPOINT_COLUMNS = (
    "id, tenant_id, url, event_types, description, enabled, disabled_at, disabled_reason,"
    " failing_since, created_at"
)


def _endpoint(row: asyncpg.Record) -> dict:
    out = dict(row)
    for key in ("id", "tenant_id"):
        out[key] = str(out[key])
    for key in ("disabled_at", "failing_since", "created_at"):
        out[key] = out[key].isoformat() if out[key] else None
    out["event_types"] = list(out["event_types"]) or ["*"]
    return out


async def add_endpoint(
    conn: Conn, tenant_id: str, url: str, types: list[str] | str | None, description: str = ""
) -> dict:
    """A new endpoint with a fresh signing secret; the result carries the secret (shown once)."""
    tid, url, types = _uuid(tenant_id, "tenant_id"), check_url(url), event_types(types)
    await _tenant_exists(conn, tid)
    secret = new_secret()
    row = await conn.fetchrow(
        f"INSERT INTO webhook_endpoints (id, tenant_id, url, secret, event_types, description)"  # noqa: S608
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_ENDPOINT_COLUMNS}",
        uuid.uuid4(),
        tid,
        url,
        secret,
        types,
        description or None,
    )
    return {**_endpoint(row), "secret": secret}


async def list_endpoints(conn: Conn, tenant_id: str) -> list[dict]:
    rows = await conn.fetch(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints"  # noqa: S608
        " WHERE tenant_id = $1 AND removed_at IS NULL ORDER BY created_at",
        _uuid(tenant_id, "tenant_id"),
    )
    return [_endpoint(r) for r in rows]


async def endpoint_secret(conn: Conn, tenant_id: str, endpoint_id: str) -> str | None:
    return await conn.fetchval(
        "SELECT secret FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2"
        " AND removed_at IS NULL",
        _uuid(endpoint_id, "endpoint_id"),
        _uuid(tenant_id, "tenant_id"),
    )


async def set_endpoint_enabled(
    conn: Conn, tenant_id: str, endpoint_id: str, enabled: bool, reason: str = "operator"
) -> bool:
    """Enable (clearing the failure streak) or disable an endpoint; False when there is none."""
    eid, tid = _uuid(endpoint_id, "endpoint_id"), _uuid(tenant_id, "tenant_id")
    if enabled:
        sql = (
            "UPDATE webhook_endpoints SET enabled = true, disabled_at = NULL,"
            " disabled_reason = NULL, failing_since = NULL"
            " WHERE id = $1 AND tenant_id = $2 AND removed_at IS NULL"
        )
        return (await conn.execute(sql, eid, tid)) != "UPDATE 0"
    return await disable_endpoint(conn, eid, reason, tenant_id=tid)


async def disable_endpoint(
    conn: Conn, endpoint_id: uuid.UUID, reason: str, *, tenant_id: uuid.UUID | None = None
) -> bool:
    """Disable an endpoint and move its pending deliveries to the dead-letter store."""
    sql = (
        "UPDATE webhook_endpoints SET enabled = false, disabled_at = now(), disabled_reason = $2"
        " WHERE id = $1 AND enabled AND ($3::uuid IS NULL OR tenant_id = $3) RETURNING id"
    )
    if await conn.fetchval(sql, endpoint_id, reason, tenant_id) is None:
        return False
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'dead', dead_reason = $2, finished_at = now()"
        " WHERE endpoint_id = $1 AND status = 'pending'",
        endpoint_id,
        f"endpoint disabled: {reason}",
    )
    return True


async def remove_endpoint(conn: Conn, tenant_id: str, endpoint_id: str) -> bool:
    eid, tid = _uuid(endpoint_id, "endpoint_id"), _uuid(tenant_id, "tenant_id")
    await disable_endpoint(conn, eid, "removed", tenant_id=tid)
    result = await conn.execute(
        "UPDATE webhook_endpoints SET removed_at = now(), enabled = false"
        " WHERE id = $1 AND tenant_id = $2 AND removed_at IS NULL",
        eid,
        tid,
    )
    return result != "UPDATE 0"


# ---------------------------------------------------------------------------- deliveries
DELIVERY_STATUSES = ("pending", "succeeded", "dead")


async def list_deliveries(
    conn: Conn,
    tenant_id: str,
    *,
    status: str | None = None,
    endpoint_id: str | None = None,
    limit: int = 100,
) -> list[dict]:
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidConfig("status", f"one of {', '.join(DELIVERY_STATUSES)}")
    rows = await conn.fetch(
        "SELECT id, endpoint_id, event_id, event_type, status, attempts, round_attempts,"
        " next_attempt_at, last_status, last_error, dead_reason, created_at, finished_at"
        " FROM webhook_deliveries WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)"
        " AND ($3::uuid IS NULL OR endpoint_id = $3) ORDER BY created_at DESC LIMIT $4",
        _uuid(tenant_id, "tenant_id"),
        status,
        _uuid(endpoint_id, "endpoint_id") if endpoint_id else None,
        max(1, min(limit, 1000)),
    )
    out = []
    for row in rows:
        item = dict(row)
        for key in ("id", "endpoint_id", "event_id"):
            item[key] = str(item[key])
        for key in ("next_attempt_at", "created_at", "finished_at"):
            item[key] = item[key].isoformat() if item[key] else None
        out.append(item)
    return out


async def attempts_of(conn: Conn, tenant_id: str, delivery_id: str) -> list[dict]:
    rows = await conn.fetch(
        "SELECT attempted_at, outcome, response_code, latency_ms, error FROM webhook_attempts"
        " WHERE delivery_id = $1 AND tenant_id = $2 ORDER BY attempted_at",
        _uuid(delivery_id, "delivery_id"),
        _uuid(tenant_id, "tenant_id"),
    )
    return [{**dict(r), "attempted_at": r["attempted_at"].isoformat()} for r in rows]


async def redeliver(
    conn: Conn,
    tenant_id: str,
    *,
    delivery_ids: list[str] | None = None,
    endpoint_id: str | None = None,
) -> dict:
    """Send dead deliveries again (all of the tenant's, one endpoint's, or the ones named).

    A redelivered delivery starts a fresh round of the retry schedule and keeps its
    `webhook-id`, so a shop that got it before can tell. Deliveries of disabled endpoints are
    skipped: enable the endpoint first. The lease token is cleared: an attempt still in flight
    from before (its endpoint was disabled meanwhile) can no longer record its outcome.
    """
    tid = _uuid(tenant_id, "tenant_id")
    ids = [_uuid(d, "delivery_ids") for d in delivery_ids] if delivery_ids else None
    eid = _uuid(endpoint_id, "endpoint_id") if endpoint_id else None
    where = (
        "d.tenant_id = $1 AND d.status = 'dead' AND ($2::uuid[] IS NULL OR d.id = ANY($2))"
        " AND ($3::uuid IS NULL OR d.endpoint_id = $3)"
    )
    revive = (
        "WITH r AS (UPDATE webhook_deliveries d SET status = 'pending', round_attempts = 0,"  # noqa: S608
        " next_attempt_at = now(), dead_reason = NULL, finished_at = NULL, lease_token = NULL"
        f" FROM webhook_endpoints e WHERE e.id = d.endpoint_id AND e.enabled AND {where}"
        " RETURNING d.id) SELECT count(*) FROM r"
    )
    revived = await conn.fetchval(revive, tid, ids, eid)
    skipped = await conn.fetchval(
        "SELECT count(*) FROM webhook_deliveries d WHERE " + where,  # noqa: S608
        tid,
        ids,
        eid,
    )
    if revived:
        await conn.execute(f"NOTIFY {WAKE_CHANNEL}")
    return {"redelivered": revived, "skipped_endpoint_disabled": skipped}


# ------------------------------------------------------------------------------ telegram
async def add_chat(conn: Conn, tenant_id: str, chat_id: int, types: list[str] | str | None):
    tid, types = _uuid(tenant_id, "tenant_id"), event_types(types)
    if not isinstance(chat_id, int) or isinstance(chat_id, bool):
        raise InvalidConfig("chat_id", "must be an integer Telegram chat id")
    await _tenant_exists(conn, tid)
    await conn.execute(
        "INSERT INTO telegram_chats (tenant_id, chat_id, event_types) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant_id, chat_id) DO UPDATE SET event_types = EXCLUDED.event_types,"
        " enabled = true, blocked_at = NULL, blocked_reason = NULL",
        tid,
        chat_id,
        types,
    )
    return {"tenant_id": str(tid), "chat_id": chat_id, "event_types": types or ["*"]}


async def list_chats(conn: Conn, tenant_id: str) -> list[dict]:
    rows = await conn.fetch(
        "SELECT chat_id, event_types, enabled, blocked_at, blocked_reason FROM telegram_chats"
        " WHERE tenant_id = $1 ORDER BY created_at",
        _uuid(tenant_id, "tenant_id"),
    )
    return [
        {
            **dict(r),
            "event_types": list(r["event_types"]) or ["*"],
            "blocked_at": r["blocked_at"].isoformat() if r["blocked_at"] else None,
        }
        for r in rows
    ]


async def remove_chat(conn: Conn, tenant_id: str, chat_id: int) -> bool:
    result = await conn.execute(
        "DELETE FROM telegram_chats WHERE tenant_id = $1 AND chat_id = $2",
        _uuid(tenant_id, "tenant_id"),
        chat_id,
    )
    return result != "DELETE 0"


async def set_template(conn: Conn, tenant_id: str, event_type: str, template: str) -> dict:
    tid = _uuid(tenant_id, "tenant_id")
    [event_type] = event_types([event_type]) or ["*"]
    if event_type == "*":
        raise InvalidConfig("event_type", "name one event type")
    if not isinstance(template, str) or not template.strip():
        raise InvalidConfig("template", "required")
    problem = check_template(template)
    if problem:
        raise InvalidConfig("template", problem)
    await _tenant_exists(conn, tid)
    await conn.execute(
        "INSERT INTO telegram_templates (tenant_id, event_type, template) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant_id, event_type) DO UPDATE SET template = EXCLUDED.template,"
        " updated_at = now()",
        tid,
        event_type,
        template,
    )
    return {"tenant_id": str(tid), "event_type": event_type, "template": template}


async def list_templates(conn: Conn, tenant_id: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT event_type, template FROM telegram_templates WHERE tenant_id = $1",
        _uuid(tenant_id, "tenant_id"),
    )
    return {r["event_type"]: r["template"] for r in rows}


async def remove_template(conn: Conn, tenant_id: str, event_type: str) -> bool:
    result = await conn.execute(
        "DELETE FROM telegram_templates WHERE tenant_id = $1 AND event_type = $2",
        _uuid(tenant_id, "tenant_id"),
        event_type,
    )
    return result != "DELETE 0"


# ------------------------------------------------------------------- fan-out look-ups
@dataclass(frozen=True)
class TenantSubscriptions:
    endpoints: tuple[tuple[uuid.UUID, tuple[str, ...]], ...]  # (endpoint id, types)
    chats: tuple[tuple[int, tuple[str, ...]], ...]  # (chat id, types)


class SubscriptionDirectory:
    """Each tenant's live endpoints and chats, cached: a change is seen within `ttl_s`."""

    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 5.0) -> None:
        self.pool = pool
        self._cache: TTLCache[str, TenantSubscriptions] = TTLCache(100_000, ttl_s)

    async def of(self, tenant_id: str) -> TenantSubscriptions:
        hit = self._cache.get(tenant_id)
        if hit is not None:
            return hit
        tid = uuid.UUID(tenant_id)
        async with self.pool.acquire() as conn:
            endpoints = await conn.fetch(
                "SELECT id, event_types FROM webhook_endpoints"
                " WHERE tenant_id = $1 AND enabled AND removed_at IS NULL",
                tid,
            )
            chats = await conn.fetch(
                "SELECT chat_id, event_types FROM telegram_chats"
                " WHERE tenant_id = $1 AND enabled AND blocked_at IS NULL",
                tid,
            )
        subs = TenantSubscriptions(
            tuple((r["id"], tuple(r["event_types"])) for r in endpoints),
            tuple((r["chat_id"], tuple(r["event_types"])) for r in chats),
        )
        self._cache.set(tenant_id, subs)
        return subs
