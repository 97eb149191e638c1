"""The platform admin API (`/api/admin/...`, bearer admin token): tenants and their rules.

POST  /api/admin/tenants                    create a tenant: {"name", "rules"?} -> credentials
GET   /api/admin/tenants/{id}               the tenant and its current rules
PATCH /api/admin/tenants/{id}/rules         change some rules; answers the whole new rules
POST  /api/admin/expiry-sweeps              run the expiry sweep now ({"as_of"?} in tests)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from ingest import admin_dead_letters
from ingest.admin_auth import ADMIN_REFUSALS, TENANT_PARAM, admin_only
from ingest.api_models import (
    RulesPatch,
    SweepRequest,
    SweepStarted,
    TenantCreate,
    TenantCreated,
    TenantView,
)
from ingest.context import POOL, PRODUCER, SETTINGS
from ingest.openapi import Resp, documented, errors
from ingest.responses import error, json_response
from kopilka.core import topics
from kopilka.core.logging import get_logger
from kopilka.directory import tenant_admin
from kopilka.directory.expiry import due_commands
from schemas.errors import InboundError
from schemas.tenant_rules import TenantRules
from schemas.text_checks import check_tree

log = get_logger(__name__)


_ADMIN = {"tags": ["admin"], "security": "adminToken"}
_DENIED = ADMIN_REFUSALS
_TENANT = TENANT_PARAM


async def _json_object(request: web.Request) -> dict | web.Response:
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return error(400, "malformed_json", f"invalid JSON: {exc}")
    if not isinstance(data, dict):
        return error(422, "invalid_field", "the body must be a JSON object")
    try:
        check_tree(data)  # Postgres cannot store NUL: refuse it here, naming the field
    except InboundError as exc:
        return error(exc.status, exc.code, exc.reason, exc.field)
    return data


def _invalid(exc: ValidationError) -> web.Response:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    return error(422, "invalid_field", first["msg"], field)


def _tenant_id(request: web.Request) -> str | None:
    try:
        return str(uuid.UUID(request.match_info["tenant_id"]))
    except ValueError:
        return None


def _not_published(exc: Exception) -> web.Response:
    log.error("rules_publish_failed", error=type(exc).__name__)
    return error(
        503,
        "broker_unavailable",
        "saved, but not yet sent to the workers (Kafka unreachable); retry the same request",
        headers={"Retry-After": "5"},
    )


@documented(
    "Create a shop",
    request={"application/json": TenantCreate},
    responses={
        201: Resp("the shop and its credentials, shown once", TenantCreated),
        **errors(400, 422),
        **_DENIED,
    },
    **_ADMIN,
)
@admin_only
async def create_tenant(request: web.Request) -> web.Response:
    data = await _json_object(request)
    if isinstance(data, web.Response):
        return data
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        return error(422, "missing_field", "name is required", "name")
    try:
        rules = TenantRules.model_validate(data.get("rules") or {})
    except ValidationError as exc:
        return _invalid(exc)
    try:
        new = await tenant_admin.create(
            request.app[POOL], request.app[PRODUCER], name.strip()[:200], rules
        )
    except KafkaError as exc:
        return _not_published(exc)
    log.info("tenant_created", tenant_id=new.tenant.id)
    return json_response(tenant_admin.new_tenant_view(new, request.app[SETTINGS]), 201)


@documented(
    "A shop and its rules",
    parameters=[_TENANT],
    responses={200: Resp("the shop", TenantView), **errors(404), **_DENIED},
    **_ADMIN,
)
@admin_only
async def get_tenant(request: web.Request) -> web.Response:
    tenant_id = _tenant_id(request)
    tenant = await tenant_admin.show(request.app[POOL], tenant_id) if tenant_id else None
    if tenant is None:
        return error(404, "tenant_not_found", "no tenant with this id", "tenant_id")
    return json_response(tenant_admin.tenant_view(tenant))


@documented(
    "Change some of a shop's loyalty rules",
    description="Applies to what is processed after it, on every worker within moments.",
    parameters=[_TENANT],
    request={"application/json": RulesPatch},
    responses={
        200: Resp("the shop with all its rules", TenantView),
        **errors(400, 404, 422),
        **_DENIED,
    },
    **_ADMIN,
)
@admin_only
async def update_rules(request: web.Request) -> web.Response:
    tenant_id = _tenant_id(request)
    if tenant_id is None:
        return error(404, "tenant_not_found", "no tenant with this id", "tenant_id")
    changes = await _json_object(request)
    if isinstance(changes, web.Response):
        return changes
    unknown = sorted(set(changes) - set(TenantRules.model_fields))
    if unknown:
        return error(422, "invalid_field", "not a rule: " + ", ".join(unknown), unknown[0])
    try:
        tenant = await tenant_admin.update(
            request.app[POOL], request.app[PRODUCER], tenant_id, changes
        )
    except ValidationError as exc:
        return _invalid(exc)
    except KafkaError as exc:
        return _not_published(exc)
    if tenant is None:
        return error(404, "tenant_not_found", "no tenant with this id", "tenant_id")
    log.info("tenant_rules_updated", tenant_id=tenant_id, revision=tenant.rules_revision)
    return json_response(tenant_admin.tenant_view(tenant))


@documented(
    "Run the expiry sweep now",
    request={"application/json": SweepRequest},
    request_required=False,
    responses={202: Resp("expire commands sent", SweepStarted), **errors(400, 422), **_DENIED},
    **_ADMIN,
)
@admin_only
async def expiry_sweep(request: web.Request) -> web.Response:
    data = await _json_object(request) if request.can_read_body else {}
    if isinstance(data, web.Response):
        return data
    now = datetime.now(UTC)
    as_of = now
    if data.get("as_of") is not None:
        try:
            as_of = datetime.fromisoformat(str(data["as_of"]))
        except ValueError:
            return error(422, "invalid_field", "as_of must be an ISO 8601 time", "as_of")
        if as_of.tzinfo is None:
            return error(422, "invalid_field", "as_of needs a time zone", "as_of")
        if as_of > now and not request.app[SETTINGS].allow_future_sweeps:
            return error(422, "invalid_field", "as_of may not be in the future", "as_of")
    due = await due_commands(request.app[POOL], as_of)
    producer = request.app[PRODUCER]
    try:
        for cmd in due:
            await producer.send(topics.COMMANDS.name, cmd.to_bytes(), key=cmd.key)
        await producer.flush()
    except KafkaError as exc:
        return _not_published(exc)
    return json_response({"as_of": as_of.isoformat(), "customers": len(due)}, 202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/admin/tenants", create_tenant)
    app.router.add_get("/api/admin/tenants/{tenant_id}", get_tenant)
    app.router.add_patch("/api/admin/tenants/{tenant_id}/rules", update_rules)
    app.router.add_post("/api/admin/expiry-sweeps", expiry_sweep)
    admin_dead_letters.add_routes(app)
