"""JSON responses with one error shape everywhere: {"error", "field", "reason"}."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from kopilka.core.db import CONNECTION_LOST, DATABASE_DOWN
from kopilka.core.logging import get_logger

log = get_logger(__name__)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_dumps(data), status=status, headers=headers, content_type="application/json"
    )


def _dumps(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:  # text that is not valid Unicode (a lone surrogate): escape, never fail
        return json.dumps(data, ensure_ascii=True, default=str).encode()


def error(
    status: int,
    code: str,
    reason: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return json_response({"error": code, "field": field, "reason": reason}, status, headers)


_BODY_HEADERS = ("content-type", "content-length")


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """aiohttp's own refusals (no such route, wrong method, ...) in the one JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
        code = exc.reason.lower().replace(" ", "_") if exc.reason else "http_error"
        return error(exc.status, code, exc.reason or "refused", headers=keep)


# SQLSTATE classes that mean "the database cannot answer now", not "this request is wrong":
# connection (08), transaction rollback (40), insufficient resources (53), operator
# intervention (57), lock not available (55P03), read-only transaction during failover (25006).
_UNAVAILABLE_CLASSES = ("08", "40", "53", "57")
_UNAVAILABLE_STATES = frozenset({"55P03", "25006"})


def database_is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, CONNECTION_LOST):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and (
        state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES
    )


RETRY_AFTER_S = 5


@web.middleware
async def database_unavailable(request: web.Request, handler) -> web.StreamResponse:
    """Whatever route needs the database answers 503 with Retry-After while it is down."""
    try:
        return await handler(request)
    except DATABASE_DOWN as exc:
        if not database_is_unavailable(exc):
            raise
        resource = request.match_info.route.resource  # the pattern: a path may hold a secret
        route = resource.canonical if resource is not None else None
        log.warning("database_unavailable", route=route, error=type(exc).__name__)
        return error(
            503,
            "unavailable",
            "the database is unavailable, retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
