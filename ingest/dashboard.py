"""The shop's dashboard at /dashboard: routes, its per-process state, and its static files.

State (set up after `edge_state`, whose rate limiter it shares): the session store (Redis when
`REDIS_URL` is set, else this process's memory), the per-IP budget of wrong keys at sign-in,
and the cached check that a session's key still opens its shop.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ingest import dashboard_auth as auth
from ingest import dashboard_outbound, dashboard_pages
from ingest.attempts import FailedAttempts
from ingest.context import LIMITER, POOL, SETTINGS
from ingest.dashboard_html import BASE, STATIC
from ingest.dashboard_session import LocalSessionStore, RedisSessionStore
from ingest.event_stream import stream_response
from ingest.openapi import Param, Resp, document, errors
from ingest.ratelimit import Quota
from kopilka.core.logging import get_logger

log = get_logger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "dashboard_static"


async def dashboard_state(app: web.Application):
    """cleanup_ctx: sessions, the sign-in failure budget, the key check."""
    settings = app[SETTINGS]
    redis: Redis | None = None
    url = settings.redis_url.get_secret_value().strip() if settings.redis_url else ""
    if url:
        # no retries with backoff: while Redis is down a page falls back at once, not after ~15 s
        redis = Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        app[auth.SESSIONS] = RedisSessionStore(redis)
    else:
        app[auth.SESSIONS] = LocalSessionStore()
    log.info("dashboard_sessions", backend=app[auth.SESSIONS].backend)
    budget = settings.admin_failures_per_minute
    app[auth.SIGN_IN_FAILURES] = FailedAttempts(
        app[LIMITER], "dashboard-key", Quota(budget, budget)
    )
    app[auth.KEY_CHECK] = auth.KeyCheck(app[POOL])
    yield
    if redis is not None:
        await redis.aclose()


_STATIC_FILES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}


async def static_file(request: web.Request) -> web.StreamResponse:
    """One of the dashboard's own files (a fixed list: no path from the request reaches disk)."""
    name = request.match_info["name"]
    if name not in _STATIC_FILES or not (STATIC_DIR / name).is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        STATIC_DIR / name,
        headers={
            "Content-Type": f"{_STATIC_FILES[name]}; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


@auth.authenticated
async def live_events(request: web.Request, view) -> web.StreamResponse:
    """The signed-in shop's events as Server-Sent Events (ingest.event_stream), for the
    dashboard's live updates; resumes from Last-Event-ID like the API's stream."""
    return await stream_response(request, view.tenant.id, None)


_PAGE = {200: Resp("an HTML page", None, media="text/html")}
_STATIC_NAME = {"type": "string", "enum": sorted(_STATIC_FILES)}
_SIGNED_IN = {**_PAGE, 303: Resp("not signed in: to the sign-in form", None, media="text/html")}
_POST = {
    303: Resp("done: to the page that shows the result", None, media="text/html"),
    401: Resp("not signed in", None, media="text/html"),
    403: Resp("the form's CSRF token is missing or wrong", None, media="text/html"),
}
_DOCS = [
    (dashboard_pages.overview, "Dashboard: the shop's rules and charts", _SIGNED_IN),
    (auth.sign_in_form, "Dashboard: the sign-in form", _PAGE),
    (
        auth.sign_in,
        "Dashboard: sign in with the shop's API key (form post; sets the session cookie)",
        {
            303: Resp("signed in: to the dashboard", None, media="text/html"),
            401: Resp("wrong key", None, media="text/html"),
            403: Resp("the form expired (sign-in CSRF token)", None, media="text/html"),
            422: Resp("no key given", None, media="text/html"),
            429: Resp("too many wrong keys from this address", None, media="text/html"),
        },
    ),
    (auth.sign_out, "Dashboard: sign out (ends the session)", _POST),
    (dashboard_pages.customers, "Dashboard: find a customer by email or phone", _SIGNED_IN),
    (dashboard_pages.webhooks, "Dashboard: recent webhooks and refusal reasons", _SIGNED_IN),
    (dashboard_pages.telegram, "Dashboard: the shop's Telegram chats", _SIGNED_IN),
    (dashboard_outbound.outbound, "Dashboard: endpoints, deliveries, attempts", _SIGNED_IN),
    (dashboard_outbound.redeliver, "Dashboard: send dead deliveries again", _POST),
    (
        live_events,
        "Dashboard: the shop's events, live (Server-Sent Events, session cookie)",
        {
            200: Resp("an endless text/event-stream", None, media="text/event-stream"),
            303: Resp("not signed in: to the sign-in form", None, media="text/html"),
            422: Resp("Last-Event-ID is not a token of this stream", None),
        },
    ),
    (
        static_file,
        "Dashboard: its stylesheet and script",
        {
            200: Resp("the file", None, media="text/css, text/javascript"),
            **errors(404),
        },
        [Param("name", "path", "the file's name", required=True, schema=_STATIC_NAME)],
    ),
]
for _handler, _summary, _responses, *_params in _DOCS:
    document(
        _handler,
        _summary,
        tags=["dashboard"],
        responses=_responses,
        parameters=_params[0] if _params else (),
    )


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(dashboard_state)
    r = app.router
    r.add_get(BASE, dashboard_pages.overview)
    r.add_get(auth.SIGN_IN, auth.sign_in_form)
    r.add_post(auth.SIGN_IN, auth.sign_in)
    r.add_post(f"{BASE}/sign-out", auth.sign_out)
    r.add_get(f"{BASE}/customers", dashboard_pages.customers)
    r.add_get(f"{BASE}/webhooks", dashboard_pages.webhooks)
    r.add_get(f"{BASE}/telegram", dashboard_pages.telegram)
    r.add_get(f"{BASE}/outbound", dashboard_outbound.outbound)
    r.add_post(f"{BASE}/outbound/redeliver", dashboard_outbound.redeliver)
    r.add_get(f"{BASE}/events", live_events)
    r.add_get(f"{STATIC}/{{name}}", static_file)
