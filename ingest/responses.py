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
