"""The OpenAPI 3.1 document of every HTTP route, built from the routes and the pydantic models.

A handler carries its description: decorate it with `@documented(...)` (outermost, above
`@admin_only`), or call `document(handler, ...)` where it is wired. `build(app)` walks the app's
router and turns each route's `Operation` into the document; request and response bodies are the
JSON Schemas pydantic generates from the models named there. Nothing is written by hand twice:
`GET /api/openapi.json` serves `build(app)`, `GET /api/docs` renders the same document as a page,
and tests/ingest/test_openapi.py fails when a route has no `Operation`.

    @documented(
        "Show a customer",
        parameters=[Param("email", "query", "the customer's email")],
        responses={200: Resp("the customer", CustomerView), **errors(401, 404)},
        security="apiKey",
    )
    async def get_customer(request): ...
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ingest.api_models import ErrorBody
from ingest.responses import json_response

Model = type[BaseModel]
_REF = "#/components/schemas/{model}"

# Response headers a route may name in `Resp(headers=...)`.
HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit": {
        "description": 'the tenant\'s remaining quota: `"tenant";r=<requests left>;t=<seconds '
        "until the bucket is full>` (IETF draft-ietf-httpapi-ratelimit-headers)",
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {
        "description": '`"tenant";q=<burst>;w=<seconds to refill it>`',
        "schema": {"type": "string"},
    },
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}},
    "WWW-Authenticate": {
        "description": "the scheme to authenticate with",
        "schema": {"type": "string"},
    },
}
SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "the shop's API key (`kpk_…`), shown once by `kopilka tenants create`",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "the platform operators' token (KOPILKA_ADMIN_TOKEN)",
    },
}


@dataclass(frozen=True)
class Resp:
    description: str
    model: Model | Sequence[Model] | None = None  # several: anyOf
    media: str = "application/json"
    headers: Mapping[str, bool] = field(default_factory=dict)  # name -> always present


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    description: str
    required: bool = False
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: Mapping[int, Resp]
    description: str = ""
    tags: Sequence[str] = ()
    parameters: Sequence[Param] = ()
    request: Mapping[str, Model | Sequence[Model]] | None = None  # media type -> model(s)
    request_required: bool = True
    security: str | None = None  # a key of SECURITY_SCHEMES


def errors(*statuses: int, headers: Mapping[str, bool] | None = None) -> dict[int, Resp]:
    """Error responses, all with the one error body."""
    return {s: Resp(_REASONS.get(s, "refused"), ErrorBody, headers=headers or {}) for s in statuses}


_REASONS = {
    400: "malformed request",
    401: "not authenticated, or the signature did not verify",
    403: "forbidden",
    404: "not found",
    408: "the body did not arrive in time",
    409: "the same delivery is being stored right now; retry after Retry-After seconds",
    413: "body too large",
    415: "unsupported content type",
    422: "a field is invalid",
    429: "over the rate limit",
    503: "temporarily unavailable; retry after Retry-After seconds",
}


def document(handler: Callable, summary: str, **kwargs: Any) -> Callable:
    """Attach an Operation to a handler (for handlers defined elsewhere); returns the handler."""
    handler.__openapi__ = Operation(summary, **kwargs)  # type: ignore[attr-defined]
    return handler


def documented(summary: str, **kwargs: Any) -> Callable[[Callable], Callable]:
    def decorate(handler: Callable) -> Callable:
        return document(handler, summary, **kwargs)

    return decorate


def operation_of(route: web.AbstractRoute) -> Operation | None:
    return getattr(route.handler, "__openapi__", None)


def _routes(app: web.Application):
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp adds HEAD beside every GET
            continue
        yield route.method.lower(), route.resource.canonical, route


def undocumented(app: web.Application) -> list[str]:
    return [f"{m.upper()} {path}" for m, path, r in _routes(app) if operation_of(r) is None]


def _models(op: Operation) -> list[tuple[Model, str]]:
    found: list[tuple[Model, str]] = []

    def add(spec, mode: str) -> None:
        for model in [spec] if isinstance(spec, type) else spec or ():
            found.append((model, mode))

    for spec in (op.request or {}).values():
        add(spec, "validation")
    for resp in op.responses.values():
        add(resp.model, "serialization")
    return found


def build(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every documented route of `app`."""
    ops = [(m, path, op) for m, path, r in _routes(app) if (op := operation_of(r))]
    pairs = list(dict.fromkeys(pair for *_, op in ops for pair in _models(op)))
    keyed, defs = models_json_schema(pairs, ref_template=_REF)

    def schema(spec, mode: str) -> dict[str, Any]:
        if isinstance(spec, type):
            return keyed[(spec, mode)]
        return {"anyOf": [keyed[(m, mode)] for m in spec]}

    paths: dict[str, dict[str, Any]] = {}
    for method, path, op in ops:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": method + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_"),
            "responses": {
                str(status): _response(resp, schema)
                for status, resp in sorted(op.responses.items())
            },
        }
        if op.description:
            entry["description"] = op.description
        if op.tags:
            entry["tags"] = list(op.tags)
        if op.parameters:
            entry["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "description": p.description,
                    "required": p.required or p.where == "path",
                    "schema": dict(p.schema),
                }
                for p in op.parameters
            ]
        if op.request:
            entry["requestBody"] = {
                "required": op.request_required,
                "content": {
                    media: {"schema": schema(spec, "validation")}
                    for media, spec in op.request.items()
                },
            }
        if op.security:
            entry["security"] = [{op.security: []}]
        paths.setdefault(path, {})[method] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Kopilka",
            "version": metadata.version("kopilka"),
            "description": "Loyalty-bonus engine: webhook ingress and read API. "
            "Errors always have the body {error, field, reason}.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(defs.get("$defs", {}).items())),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _response(resp: Resp, schema: Callable) -> dict[str, Any]:
    out: dict[str, Any] = {"description": resp.description}
    if resp.model is not None:
        out["content"] = {resp.media: {"schema": schema(resp.model, "serialization")}}
    else:
        plain = {"type": "object"} if resp.media == "application/json" else {"type": "string"}
        # a body with no model may come as one of several types: "text/css, text/javascript"
        out["content"] = {media.strip(): {"schema": plain} for media in resp.media.split(",")}
    if resp.headers:
        out["headers"] = {
            name: {**HEADERS[name], "required": required} for name, required in resp.headers.items()
        }
    return out


# ------------------------------------------------------------------------------------ serving

_DOCUMENT = web.AppKey("openapi_document", dict)


def _served(app: web.Application) -> dict[str, Any]:
    cache = app[_DOCUMENT]
    if "doc" not in cache:
        cache["doc"] = build(app)
    return cache["doc"]


@documented(
    "This API's OpenAPI 3.1 document",
    tags=["docs"],
    responses={200: Resp("the document", None, media="application/json")},
)
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(_served(request.app))


@documented(
    "This API's documentation as a page",
    tags=["docs"],
    responses={200: Resp("an HTML page", None, media="text/html")},
)
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=render_html(_served(request.app)), content_type="text/html")


def add_routes(app: web.Application) -> None:
    app[_DOCUMENT] = {}
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/api/docs", docs_page)


def render_html(doc: dict[str, Any]) -> str:
    """A self-contained, readable page of the document (no scripts, nothing fetched)."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(doc['info']['title'])} API</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(doc['info']['title'])} API <small>{e(doc['info']['version'])}</small></h1>",
        f"<p>{e(doc['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/api/openapi.json'>/api/openapi.json</a> (OpenAPI 3.1)</p>",
    ]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            parts.append(f"<section><h2><code>{e(method.upper())} {e(path)}</code></h2>")
            parts.append(f"<p><b>{e(op['summary'])}</b></p>")
            if "description" in op:
                parts.append(f"<p class='d'>{e(op['description'])}</p>")
            if "security" in op:
                parts.append(f"<p>Auth: {e(', '.join(k for s in op['security'] for k in s))}</p>")
            if op.get("parameters"):
                rows = "".join(
                    f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['in'])}</td>"
                    f"<td>{'yes' if p['required'] else ''}</td><td>{e(p['description'])}</td></tr>"
                    for p in op["parameters"]
                )
                parts.append(
                    "<table><tr><th>parameter</th><th>in</th><th>required</th><th></th></tr>"
                    f"{rows}</table>"
                )
            if "requestBody" in op:
                for media, body in op["requestBody"]["content"].items():
                    parts.append(_schema_block(f"request body ({media})", body["schema"]))
            for status, resp in op["responses"].items():
                headers = ", ".join(resp.get("headers", {}))
                title = f"{status}: {resp['description']}" + (
                    f" [headers: {headers}]" if headers else ""
                )
                content = resp.get("content", {})
                schema = next(iter(content.values()), {}).get("schema")
                parts.append(_schema_block(title, schema) if schema else f"<p>{e(title)}</p>")
            parts.append("</section>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        parts.append(f"<a id='{e(name)}'></a>" + _schema_block(name, schema))
    parts.append("</body></html>")
    return "".join(parts)


def _schema_block(title: str, schema: dict[str, Any]) -> str:
    text = html.escape(json.dumps(schema, indent=2, ensure_ascii=False))
    return f"<details><summary>{html.escape(title)}</summary><pre>{text}</pre></details>"


_CSS = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
    "section{border-top:1px solid #ddd;margin-top:1.5em}h2 code{font-size:1.1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}"
    "pre{background:#f6f8fa;padding:.5em;overflow:auto}.d{white-space:pre-line}"
)
