"""Signing in to the dashboard with the shop's API key, signing out, and guarding every page.

- The key is looked up like the read API does (TenantDirectory.by_api_key: SHA-256 digest, an
  indexed equality) and never logged or stored; the session keeps only the key's digest.
- A wrong key costs one token of the client IP's budget (`admin_failures_per_minute`, the same
  bucket machinery as wrong admin tokens, scope `dashboard-key`); once it is spent, every
  sign-in from that IP is refused with 429 and Retry-After until the bucket refills.
- The session cookie is HttpOnly, SameSite=Strict (the dashboard is never entered by a
  cross-site POST or link that needs the session), Secure when the request came over https or
  `KOPILKA_PUBLIC_URL` is https, and scoped to /dashboard.
- Every POST carries the session's CSRF token in a hidden field, compared in constant time. The
  sign-in form itself has a one-time token bound to a short-lived cookie (login CSRF).
- On every request the key's digest is checked again (cached `CHECK_TTL_S`): a rotated-out key
  or a disabled shop ends its sessions.
"""

from __future__ import annotations

import hmac
import secrets
import uuid

import asyncpg
from aiohttp import web

from ingest import dashboard_html as ui
from ingest.attempts import FailedAttempts, client_ip
from ingest.context import TENANTS
from ingest.dashboard_html import BASE, View, e, view_of
from ingest.dashboard_session import COOKIE, SessionStore, new_session
from kopilka.core.cache import TTLCache
from kopilka.core.logging import get_logger
from kopilka.directory.tenants import digest

log = get_logger(__name__)

SIGN_IN = f"{BASE}/sign-in"
PRE_COOKIE = "kopilka_sign_in"  # the sign-in form's one-time token
SESSIONS = web.AppKey("dashboard_sessions", SessionStore)
SIGN_IN_FAILURES = web.AppKey("dashboard_sign_in_failures", FailedAttempts)
CHECK_TTL_S = 5.0

_VALID_KEY = """
SELECT c.tenant_id FROM tenant_credentials c JOIN tenants t ON t.id = c.tenant_id
WHERE c.digest = $1 AND c.kind = 'api_key' AND (c.expires_at IS NULL OR c.expires_at > now())
  AND t.active
"""


class KeyCheck:
    """Which shop a key digest still opens (None: expired, rotated out, or the shop disabled)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # values wrapped in a tuple, so that a cached "no shop" (None) is told from a miss
        self._cache: TTLCache[bytes, tuple[str | None]] = TTLCache(100_000, CHECK_TTL_S)

    async def tenant_of(self, key_digest: bytes) -> str | None:
        hit = self._cache.get(key_digest)
        if hit is not None:
            return hit[0]
        tenant_id = await self.pool.fetchval(_VALID_KEY, key_digest)
        found = str(tenant_id) if tenant_id else None
        self._cache.set(key_digest, (found,))
        return found


KEY_CHECK = web.AppKey("dashboard_key_check", KeyCheck)


def _cookie(response: web.StreamResponse, name: str, value: str, view: View, **kw) -> None:
    response.set_cookie(
        name, value, path=BASE, httponly=True, samesite="Strict", secure=view.secure, **kw
    )


def _sign_in_page(view: View, *, status: int = 200, message: str | None = None, headers=None):
    t = view.t
    token = secrets.token_urlsafe(32)
    alert = f'<p class="error" role="alert" id="sign-in-error">{e(message)}</p>' if message else ""
    described = "key-hint sign-in-error" if message else "key-hint"
    body = f"""{alert}
<form method="post" action="{SIGN_IN}" class="card narrow">
{ui.csrf_field(token)}
<label for="api_key">{e(t("sign_in.key"))}</label>
<input id="api_key" name="api_key" type="password" autocomplete="current-password" required
       spellcheck="false" autocapitalize="off" aria-describedby="{described}">
<p class="hint" id="key-hint">{e(t("sign_in.key_hint"))}</p>
<button type="submit">{e(t("sign_in.submit"))}</button>
</form>"""
    response = ui.page(view, t("sign_in.title"), body, status=status, headers=headers)
    _cookie(response, PRE_COOKIE, token, view, max_age=3600)
    return response


async def sign_in_form(request: web.Request) -> web.Response:
    view = view_of(request)
    if request.query.get("signed_out"):
        view.flash.append(view.t("sign_in.signed_out"))
    return _sign_in_page(view)


async def sign_in(request: web.Request) -> web.Response:
    view, ip = view_of(request), client_ip(request)
    t = view.t
    failures = request.app[SIGN_IN_FAILURES]
    wait = failures.blocked(ip)
    if wait is not None:
        return _refused(view, wait)
    form = await ui.form(request)
    given, expected = str(form.get("csrf", "")), request.cookies.get(PRE_COOKIE, "")
    if not (given and expected and hmac.compare_digest(given.encode(), expected.encode())):
        return _sign_in_page(view, status=403, message=t("sign_in.expired_form"))
    key = str(form.get("api_key", "")).strip()
    if not key:
        return _sign_in_page(view, status=422, message=t("sign_in.missing_key"))
    tenant = await request.app[TENANTS].by_api_key(key)
    if tenant is None or not tenant.active:
        log.info("dashboard_sign_in_refused", client_ip=ip)
        wait = await failures.failed(ip)
        if wait is not None:
            return _refused(view, wait)
        return _sign_in_page(view, status=401, message=t("sign_in.wrong_key"))
    session_id, session = new_session(tenant.id, digest(key).hex())
    await request.app[SESSIONS].save(session_id, session)
    log.info("dashboard_signed_in", tenant_id=tenant.id, client_ip=ip)
    response = ui.redirect(view, BASE)
    _cookie(response, COOKIE, session_id, view)
    response.del_cookie(PRE_COOKIE, path=BASE)
    return response


def _refused(view: View, wait: int) -> web.Response:
    return _sign_in_page(
        view,
        status=429,
        message=view.t("sign_in.too_many", seconds=wait),
        headers={"Retry-After": str(wait)},
    )


async def signed_in(request: web.Request) -> View | None:
    """The request's view with its session and shop, or None when it is not signed in."""
    view = view_of(request)
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        return None
    store = request.app[SESSIONS]
    session = await store.load(session_id)
    if session is None:
        return None
    tenant_id = await request.app[KEY_CHECK].tenant_of(bytes.fromhex(session.key_digest))
    if tenant_id != session.tenant_id:
        await store.delete(session_id)
        log.info("dashboard_session_ended", tenant_id=session.tenant_id, reason="key_invalid")
        return None
    tenant = await request.app[TENANTS].by_id(str(uuid.UUID(tenant_id)))
    if tenant is None:
        return None
    view.session, view.session_id, view.tenant = session, session_id, tenant
    return view


def authenticated(handler):
    """Guard a page: not signed in -> to the sign-in form (401 for anything but a GET); a POST
    must carry the session's CSRF token (else 403). The handler gets (request, view)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        view = await signed_in(request)
        if view is None:
            if request.method == "GET":
                return ui.redirect(view_of(request), SIGN_IN)
            return _sign_in_page(view_of(request), status=401)
        if request.method == "POST":
            form = await ui.form(request)
            if not view.session.csrf_ok(str(form.get("csrf", ""))):
                log.warning("dashboard_csrf_refused", tenant_id=view.tenant.id)
                return ui.page(view, view.t("csrf.refused"), "", current="", status=403)
        return await handler(request, view)

    guarded.__name__ = handler.__name__
    return guarded


@authenticated
async def sign_out(request: web.Request, view: View) -> web.Response:
    await request.app[SESSIONS].delete(view.session_id)
    log.info("dashboard_signed_out", tenant_id=view.tenant.id)
    response = ui.redirect(view, f"{SIGN_IN}?signed_out=1")
    response.del_cookie(COOKIE, path=BASE)
    return response
