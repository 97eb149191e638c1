"""Admin API for outbound delivery: a tenant's endpoints, deliveries, Telegram chats, templates.

Every route is under /api/admin/tenants/{tenant_id}/ and needs the admin token (admin_only).

POST   endpoints                         {"url", "event_types", "description"} -> 201, secret
GET    endpoints
DELETE endpoints/{endpoint_id}
POST   endpoints/{endpoint_id}/enable | /disable
GET    deliveries?status=dead&endpoint_id=&limit=
GET    deliveries/{delivery_id}/attempts
POST   deliveries/redeliver              {"delivery_ids": [...]} or {"endpoint_id"} or {} (all dead)
GET    telegram                          chats and templates
PUT    telegram/chats/{chat_id}          {"event_types": [...]}
DELETE telegram/chats/{chat_id}
PUT    telegram/templates/{event_type}   {"template": "..."}
DELETE telegram/templates/{event_type}
"""

from __future__ import annotations

import orjson
from aiohttp import web
from pydantic import BaseModel, Field

from ingest.admin_auth import ADMIN_REFUSALS, TENANT_PARAM, admin_only
from ingest.context import POOL
from ingest.openapi import Param, Resp, document, errors
from ingest.responses import error, json_response
from kopilka.directory import subscriptions as subs
from kopilka.directory.subscriptions import InvalidConfig
from schemas.errors import InboundError
from schemas.text_checks import check_tree

BASE = "/api/admin/tenants/{tenant_id}"


async def _body(request: web.Request) -> dict:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidConfig("body", f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidConfig("body", "must be a JSON object")
    try:
        check_tree(data)  # Postgres cannot store NUL: refuse it here, naming the field
    except InboundError as exc:
        raise InvalidConfig(exc.field or "body", exc.reason) from None
    return data


def _handled(handler):
    """Admin-only, with InvalidConfig turned into the one error shape (404 for no tenant)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request, request.app[POOL], request.match_info["tenant_id"])
        except InvalidConfig as exc:
            status = 404 if exc.field == "tenant_id" else 422
            if exc.field == "body":
                status = 400
            return error(status, "invalid_field", exc.reason, field=exc.field)

    wrapped.__name__ = handler.__name__
    return admin_only(wrapped)


def _found(ok: bool, what: str) -> web.Response:
    return json_response({"status": "ok"}) if ok else error(404, "not_found", f"no such {what}")


def _chat_id(request: web.Request) -> int:
    try:
        return int(request.match_info["chat_id"])
    except ValueError as exc:
        raise InvalidConfig("chat_id", "must be an integer Telegram chat id") from exc


@_handled
async def add_endpoint(request, pool, tenant_id):
    body = await _body(request)
    created = await subs.add_endpoint(
        pool, tenant_id, body.get("url"), body.get("event_types"), body.get("description") or ""
    )
    return json_response(created, 201)


@_handled
async def list_endpoints(request, pool, tenant_id):
    return json_response({"endpoints": await subs.list_endpoints(pool, tenant_id)})


@_handled
async def remove_endpoint(request, pool, tenant_id):
    ok = await subs.remove_endpoint(pool, tenant_id, request.match_info["endpoint_id"])
    return _found(ok, "endpoint")


@_handled
async def enable_endpoint(request, pool, tenant_id):
    on = request.match_info["action"] == "enable"
    ok = await subs.set_endpoint_enabled(pool, tenant_id, request.match_info["endpoint_id"], on)
    return _found(ok, "endpoint (or it was already so)")


@_handled
async def list_deliveries(request, pool, tenant_id):
    q = request.query
    try:
        limit = int(q.get("limit", "100"))
    except ValueError as exc:
        raise InvalidConfig("limit", "must be a whole number") from exc
    found = await subs.list_deliveries(
        pool, tenant_id, status=q.get("status"), endpoint_id=q.get("endpoint_id"), limit=limit
    )
    return json_response({"deliveries": found})


@_handled
async def delivery_attempts(request, pool, tenant_id):
    found = await subs.attempts_of(pool, tenant_id, request.match_info["delivery_id"])
    return json_response({"attempts": found})


@_handled
async def redeliver(request, pool, tenant_id):
    body = await _body(request)
    ids = body.get("delivery_ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise InvalidConfig("delivery_ids", "must be a list of delivery ids")
    result = await subs.redeliver(
        pool, tenant_id, delivery_ids=ids or None, endpoint_id=body.get("endpoint_id")
    )
    return json_response(result)


@_handled
async def telegram_settings(request, pool, tenant_id):
    return json_response(
        {
            "chats": await subs.list_chats(pool, tenant_id),
            "templates": await subs.list_templates(pool, tenant_id),
        }
    )


@_handled
async def put_chat(request, pool, tenant_id):
    body = await _body(request)
    return json_response(
        await subs.add_chat(pool, tenant_id, _chat_id(request), body.get("event_types"))
    )


@_handled
async def delete_chat(request, pool, tenant_id):
    return _found(await subs.remove_chat(pool, tenant_id, _chat_id(request)), "chat")


@_handled
async def put_template(request, pool, tenant_id):
    body = await _body(request)
    kind = request.match_info["event_type"]
    return json_response(await subs.set_template(pool, tenant_id, kind, body.get("template")))


@_handled
async def delete_template(request, pool, tenant_id):
    kind = request.match_info["event_type"]
    return _found(await subs.remove_template(pool, tenant_id, kind), "template")


class EndpointCreate(BaseModel):
    url: str = Field(description="https URL of the shop's receiver")
    event_types: list[str] | None = Field(None, description="omit for every event type")
    description: str | None = None


class Redeliver(BaseModel):
    delivery_ids: list[str] | None = None
    endpoint_id: str | None = Field(None, description="every dead delivery of this endpoint")


class ChatSettings(BaseModel):
    event_types: list[str] | None = Field(None, description="omit for every event type")


class TemplateSet(BaseModel):
    template: str = Field(description="Python format string over the event's fields")


def _doc(handler, summary: str, *params: Param, ok: int = 200, request=None) -> None:
    document(
        handler,
        summary,
        tags=["admin: outbound"],
        security="adminToken",
        parameters=[TENANT_PARAM, *params],
        request={"application/json": request} if request else None,
        request_required=request is not None,
        responses={ok: Resp(summary, None), **errors(400, 404, 422), **ADMIN_REFUSALS},
    )


_ENDPOINT = Param("endpoint_id", "path", "the endpoint's id")
_CHAT = Param("chat_id", "path", "the Telegram chat id", schema={"type": "integer"})
_TYPE = Param("event_type", "path", "an event type, e.g. bonus_awarded")
_doc(
    add_endpoint,
    "Add a callback endpoint; its signing secret is shown once",
    ok=201,
    request=EndpointCreate,
)
_doc(list_endpoints, "The shop's callback endpoints")
_doc(remove_endpoint, "Remove a callback endpoint", _ENDPOINT)
_doc(
    enable_endpoint,
    "Enable or disable a callback endpoint",
    _ENDPOINT,
    Param("action", "path", "enable or disable", schema={"enum": ["enable", "disable"]}),
)
_doc(
    list_deliveries,
    "Deliveries (filter: ?status=dead&endpoint_id=&limit=)",
    Param("status", "query", "pending, delivered, dead, ..."),
    Param("endpoint_id", "query", "one endpoint's"),
    Param("limit", "query", "at most this many", schema={"type": "integer", "minimum": 1}),
)
_doc(
    delivery_attempts,
    "Every attempt of one delivery (status, latency, response code)",
    Param("delivery_id", "path", "the delivery's id"),
)
_doc(redeliver, "Send dead deliveries again", request=Redeliver)
_doc(telegram_settings, "The shop's Telegram chats and templates")
_doc(put_chat, "Subscribe a Telegram chat to event types", _CHAT, request=ChatSettings)
_doc(delete_chat, "Unsubscribe a Telegram chat", _CHAT)
_doc(put_template, "Override the message template of an event type", _TYPE, request=TemplateSet)
_doc(delete_template, "Go back to the default template of an event type", _TYPE)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(f"{BASE}/endpoints", add_endpoint)
    r.add_get(f"{BASE}/endpoints", list_endpoints)
    r.add_delete(f"{BASE}/endpoints/{{endpoint_id}}", remove_endpoint)
    r.add_post(f"{BASE}/endpoints/{{endpoint_id}}/{{action:enable|disable}}", enable_endpoint)
    r.add_get(f"{BASE}/deliveries", list_deliveries)
    r.add_post(f"{BASE}/deliveries/redeliver", redeliver)
    r.add_get(f"{BASE}/deliveries/{{delivery_id}}/attempts", delivery_attempts)
    r.add_get(f"{BASE}/telegram", telegram_settings)
    r.add_put(f"{BASE}/telegram/chats/{{chat_id}}", put_chat)
    r.add_delete(f"{BASE}/telegram/chats/{{chat_id}}", delete_chat)
    r.add_put(f"{BASE}/telegram/templates/{{event_type}}", put_template)
    r.add_delete(f"{BASE}/telegram/templates/{{event_type}}", delete_template)
