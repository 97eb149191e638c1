"""JSON responses with one error shape everywhere: {"error", "field", "reason"}."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


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
