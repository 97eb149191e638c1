"""Authentication of the platform admin API (`/api/admin/...`).

One bearer token from settings (`KOPILKA_ADMIN_TOKEN`) guards every admin route. It is compared
in constant time; when it is not configured the admin API is off (503) rather than open. Wrong
tokens are throttled per client IP (`admin_failures_per_minute`): once an address has spent its
budget every admin request from it is answered 429 with `Retry-After`, right token or not, so
guessing cannot go faster than the budget.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from ingest.attempts import client_ip, too_many
from ingest.context import ADMIN_FAILURES, SETTINGS
from ingest.openapi import Param, errors
from ingest.responses import error

_CHALLENGE = {"WWW-Authenticate": "Bearer"}

# For the OpenAPI description of admin routes: the refusals every one of them can answer, and
# the path parameter most of them take.
ADMIN_REFUSALS = {
    **errors(401, headers={"WWW-Authenticate": True}),
    **errors(429, headers={"Retry-After": True}),
    **errors(503),
}
TENANT_PARAM = Param("tenant_id", "path", "the tenant's id (uuid)")


async def admin_refusal(request: web.Request) -> web.Response | None:
    """None when the request carries the admin token; otherwise the response to send."""
    token = request.app[SETTINGS].admin_token
    if token is None:
        return error(503, "admin_disabled", "the admin API is off: set KOPILKA_ADMIN_TOKEN")
    failures, ip = request.app[ADMIN_FAILURES], client_ip(request)
    wait = failures.blocked(ip)
    if wait is not None:
        return too_many(wait, "wrong admin tokens")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return error(
            401, "unauthorized", "send 'Authorization: Bearer <admin token>'", headers=_CHALLENGE
        )
    given_bytes = given.strip().encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(given_bytes, token.get_secret_value().encode()):
        wait = await failures.failed(ip)
        if wait is not None:
            return too_many(wait, "wrong admin tokens")
        return error(401, "unauthorized", "wrong admin token", headers=_CHALLENGE)
    return None


def admin_only(handler):
    """Decorate an admin route handler: it runs only for requests carrying the admin token."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        refusal = await admin_refusal(request)
        return refusal if refusal is not None else await handler(request)

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded
