"""Admin API for dead letters (bearer admin token): list, show, redrive.

GET  /api/admin/dead-letters?tenant_id=&stage=&code=&since=&redriven=&limit=&before=
GET  /api/admin/dead-letters/{dead_letter_id}
POST /api/admin/dead-letters/{dead_letter_id}/redrive      {"force": false}?

The same store and redrive as `kopilka dead-letters` (kopilka.directory.dead_letters,
kopilka.directory.redrive).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import get_args

import orjson
from aiohttp import web
from pydantic import BaseModel, Field

from ingest.admin_auth import ADMIN_REFUSALS, admin_only
from ingest.context import POOL, PRODUCER, SETTINGS
from ingest.openapi import Param, Resp, document, errors
from ingest.responses import error, json_response
from kopilka.core.logging import get_logger
from kopilka.directory.dead_letters import MAX_LIMIT, DeadLetterStore, Filters, decode_cursor
from kopilka.directory.redrive import redrive_ids
from schemas.dead_letters import Stage

log = get_logger(__name__)

BASE = "/api/admin/dead-letters"
STAGES = get_args(Stage)


class _Invalid(Exception):
    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason


def filters_of(query) -> tuple[Filters, int]:
    """The listing's filters and page size from the query string; _Invalid names the field."""
    stage = query.get("stage")
    if stage is not None and stage not in STAGES:
        raise _Invalid("stage", "one of " + ", ".join(STAGES))
    since = None
    if query.get("since"):
        try:
            since = datetime.fromisoformat(query["since"])
        except ValueError:
            since = None
        if since is None or since.tzinfo is None:
            raise _Invalid("since", "an ISO 8601 time with a zone, e.g. 2026-11-27T10:00:00Z")
    redriven = {"true": True, "false": False, None: None}.get(query.get("redriven"), "bad")
    if redriven == "bad":
        raise _Invalid("redriven", "true or false")
    limit_text = query.get("limit", "50")
    if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 4) or not (
        1 <= int(limit_text) <= MAX_LIMIT
    ):
        raise _Invalid("limit", f"a whole number from 1 to {MAX_LIMIT}")
    before = None
    if query.get("before"):
        try:
            before = decode_cursor(query["before"])
        except ValueError as exc:
            raise _Invalid("before", "the `next` cursor of the previous page") from exc
    filters = Filters(
        tenant_id=query.get("tenant_id") or None,
        stage=stage,
        code=query.get("code") or None,
        since=since,
        redriven=redriven,
        before=before,
    )
    return filters, int(limit_text)


@admin_only
async def list_dead_letters(request: web.Request) -> web.Response:
    try:
        filters, limit = filters_of(request.query)
    except _Invalid as exc:
        return error(422, "invalid_field", exc.reason, exc.field)
    found, cursor = await DeadLetterStore(request.app[POOL]).list(filters, limit)
    return json_response({"dead_letters": [dl.view() for dl in found], "next": cursor})


@admin_only
async def get_dead_letter(request: web.Request) -> web.Response:
    dl = await DeadLetterStore(request.app[POOL]).get(request.match_info["dead_letter_id"])
    if dl is None:
        return _not_found()
    return json_response(dl.view(full=True))


@admin_only
async def redrive(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        return error(400, "malformed_json", f"invalid JSON: {exc}")
    if not isinstance(body, dict):
        return error(422, "invalid_field", "the body must be a JSON object")
    force = body.get("force", False)
    if not isinstance(force, bool):
        return error(422, "invalid_field", "must be true or false", "force")
    store = DeadLetterStore(request.app[POOL])
    dl_id = request.match_info["dead_letter_id"]
    try:
        async with asyncio.timeout(request.app[SETTINGS].publish_timeout_s + 2):
            report = await redrive_ids(store, request.app[PRODUCER], [dl_id], force=force)
    except TimeoutError:
        report = None
    if report is not None and report.not_found:
        return _not_found()
    if report is None or report.failed:
        return error(
            503,
            "broker_unavailable",
            "Kafka did not take the record; nothing was marked, retry later",
            headers={"Retry-After": str(request.app[SETTINGS].retry_after_s)},
        )
    dl = await store.get(dl_id)
    status = "redriven" if report.redriven else "skipped"
    reason = report.skipped[0]["reason"] if report.skipped else None
    log.info("dead_letter_redrive", dead_letter_id=dl_id, status=status, force=force)
    return json_response({"status": status, "reason": reason, "dead_letter": dl.view()})


def _not_found() -> web.Response:
    return error(404, "dead_letter_not_found", "no dead letter with this id", "dead_letter_id")


class DeadLetterSource(BaseModel):
    topic: str
    partition: int
    offset: int


class DeadLetterView(BaseModel):
    id: str
    stage: str
    tenant_id: str | None
    request_id: str | None
    code: str
    reason: str
    error: str | None
    attempts: int
    source: DeadLetterSource
    value_bytes: int
    dead_at: datetime
    redriven_at: datetime | None
    redrive_count: int


class DeadLetterDetail(DeadLetterView):
    key_b64: str | None = Field(description="the original record's key, base64")
    value_b64: str = Field(description="the original record's value, base64")
    value_text: str | None = Field(description="the value as text, when it is UTF-8")


class DeadLetterPage(BaseModel):
    dead_letters: list[DeadLetterView]
    next: str | None = Field(description="pass as `before` for the next page; null: the last")


class RedriveRequest(BaseModel):
    force: bool = Field(False, description="send it again even if it was redriven before")


class RedriveResult(BaseModel):
    status: str = Field(description="redriven, or skipped (see reason)", examples=["redriven"])
    reason: str | None
    dead_letter: DeadLetterView


_TAGS = {"tags": ["admin: dead letters"], "security": "adminToken"}
_ID = Param("dead_letter_id", "path", "the dead letter's id (uuid)")
_INT = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
document(
    list_dead_letters,
    "Dead letters, newest first",
    description="Records a stage of the pipeline gave up on because of their data.",
    parameters=[
        Param("tenant_id", "query", "only this tenant's"),
        Param("stage", "query", "only this stage's", schema={"enum": list(STAGES)}),
        Param("code", "query", "only this reason code"),
        Param(
            "since", "query", "dead at or after", schema={"type": "string", "format": "date-time"}
        ),
        Param(
            "redriven",
            "query",
            "only redriven (true) or never redriven (false) ones",
            schema={"enum": ["true", "false"]},
        ),
        Param("limit", "query", "page size (default 50)", schema=_INT),
        Param("before", "query", "the previous page's `next`"),
    ],
    responses={200: Resp("a page", DeadLetterPage), **errors(422), **ADMIN_REFUSALS},
    **_TAGS,
)
document(
    get_dead_letter,
    "One dead letter, with the original record",
    parameters=[_ID],
    responses={200: Resp("the dead letter", DeadLetterDetail), **errors(404), **ADMIN_REFUSALS},
    **_TAGS,
)
document(
    redrive,
    "Send a dead letter back to its topic",
    description="The original key and value, byte for byte, to the original topic; every stage "
    "is idempotent on ids derived from them, so a second redrive changes nothing. A letter "
    "already redriven is skipped unless `force`.",
    parameters=[_ID],
    request={"application/json": RedriveRequest},
    request_required=False,
    responses={
        200: Resp("redriven or skipped", RedriveResult),
        **errors(400, 404, 422),
        **errors(503, headers={"Retry-After": False}),
        401: ADMIN_REFUSALS[401],
    },
    **_TAGS,
)


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, list_dead_letters)
    app.router.add_get(f"{BASE}/{{dead_letter_id}}", get_dead_letter)
    app.router.add_post(f"{BASE}/{{dead_letter_id}}/redrive", redrive)
