"""Authentication of the platform admin API (`/api/admin/...`).

One bearer token from settings (`KOPILKA_ADMIN_TOKEN`) guards every admin route. It is compared
in constant time; when it is not configured the admin API is off (503) rather than open.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from ingest.context import SETTINGS
from ingest.openapi import Param, errors
from ingest.responses import error

_CHALLENGE = {"WWW-Authenticate": "Bearer"}

# For the OpenAPI description of admin routes: the refusals every one of them can answer, and
# the path parameter most of them take.
ADMIN_REFUSALS = {**errors(401, headers={"WWW-Authenticate": True}), **errors(503)}
TENANT_PARAM = Param("tenant_id", "path", "the tenant's id (uuid)")


def admin_refusal(request: web.Request) -> web.Response | None:
    """None when the request carries the admin token; otherwise the response to send."""
    token = request.app[SETTINGS].admin_token
    if token is None:
        return error(503, "admin_disabled", "the admin API is off: set KOPILKA_ADMIN_TOKEN")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return error(
            401, "unauthorized", "send 'Authorization: Bearer <admin token>'", headers=_CHALLENGE
        )
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        return error(401, "unauthorized", "wrong admin token", headers=_CHALLENGE)
    return None


def admin_only(handler):
    """Decorate an admin route handler: it runs only for requests carrying the admin token."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        refusal = admin_refusal(request)
        return refusal if refusal is not None else await handler(request)

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded
