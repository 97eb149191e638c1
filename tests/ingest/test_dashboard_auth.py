"""Signing in to the dashboard, its session cookie, CSRF on every POST and the per-IP budget of
wrong keys, over real HTTP (aiohttp's test server). The shop directory and the key check are
in-memory doubles; the real ones are exercised in tests/e2e/test_dashboard.py."""

from __future__ import annotations

import re
import uuid
from http.cookies import SimpleCookie

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ingest import dashboard_auth as auth
from ingest.attempts import FailedAttempts
from ingest.context import SETTINGS, TENANTS
from ingest.dashboard_html import BASE
from ingest.dashboard_session import COOKIE, LocalSessionStore, _storage_key
from ingest.ratelimit import LocalLimiter, Quota
from kopilka.core.settings import Settings
from kopilka.directory.tenants import Tenant, digest
from schemas.tenant_rules import TenantRules

KEY = "kpk_right-key-for-the-test-shop"
SHOP = Tenant(str(uuid.uuid4()), "Shop <b>", True, TenantRules(), 1)


class Shops:
    """TenantDirectory's two look-ups the dashboard uses."""

    def __init__(self) -> None:
        self.active = True

    async def by_api_key(self, key: str):
        if key != KEY:
            return None
        return SHOP if self.active else Tenant(SHOP.id, SHOP.name, False, SHOP.rules, 1)

    async def by_id(self, tenant_id: str):
        return SHOP if tenant_id == SHOP.id else None


class Keys:
    """KeyCheck: which shop a key digest still opens."""

    def __init__(self) -> None:
        self.valid = {digest(KEY): SHOP.id}

    async def tenant_of(self, key_digest: bytes):
        return self.valid.get(key_digest)


@auth.authenticated
async def secret_page(request: web.Request, view) -> web.Response:
    return web.Response(text=f"page of {view.tenant.id}")


@auth.authenticated
async def secret_action(request: web.Request, view) -> web.Response:
    return web.Response(text="done")


def make_app(budget: int = 3, public_url: str | None = None) -> web.Application:
    app = web.Application()
    app[SETTINGS] = Settings(public_url=public_url)
    app[TENANTS] = Shops()
    app[auth.SESSIONS] = LocalSessionStore()
    app[auth.SIGN_IN_FAILURES] = FailedAttempts(
        LocalLimiter(), "dashboard-key", Quota(budget, budget)
    )
    app[auth.KEY_CHECK] = Keys()
    app.router.add_get(auth.SIGN_IN, auth.sign_in_form)
    app.router.add_post(auth.SIGN_IN, auth.sign_in)
    app.router.add_post(f"{BASE}/sign-out", auth.sign_out)
    app.router.add_get(BASE, secret_page)
    app.router.add_post(f"{BASE}/act", secret_action)
    return app


@pytest.fixture
async def client():
    c = TestClient(TestServer(make_app()))
    await c.start_server()
    yield c
    await c.close()


def hidden_csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html)[1]


def set_cookies(resp) -> dict[str, SimpleCookie]:
    out = {}
    for header in resp.headers.getall("Set-Cookie", []):
        jar = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            out[name] = morsel
    return out


async def sign_in(client, key: str = KEY):
    form = await client.get(auth.SIGN_IN)
    token = hidden_csrf(await form.text())
    return await client.post(
        auth.SIGN_IN, data={"csrf": token, "api_key": key}, allow_redirects=False
    )


async def test_sign_in_form_is_russian_by_default_and_its_token_is_bound_to_a_strict_cookie(
    client,
):
    resp = await client.get(auth.SIGN_IN)
    html = await resp.text()
    assert resp.status == 200 and '<html lang="ru">' in html and "Войти" in html
    pre = set_cookies(resp)[auth.PRE_COOKIE]
    assert pre.value == hidden_csrf(html)
    assert pre["httponly"] and pre["samesite"] == "Strict" and pre["path"] == BASE
    assert not pre["secure"]  # plain http, no https public URL
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


async def test_the_right_key_opens_a_session_with_an_httponly_strict_cookie(client):
    resp = await sign_in(client)
    assert resp.status == 303 and resp.headers["Location"] == BASE
    session = set_cookies(resp)[COOKIE]
    assert session["httponly"] and session["samesite"] == "Strict" and session["path"] == BASE
    assert KEY not in session.value
    store = client.app[auth.SESSIONS]
    assert (await store.load(session.value)).key_digest == digest(KEY).hex()
    assert session.value not in store._sessions._data  # kept under its digest only
    assert _storage_key(session.value) in store._sessions._data
    page = await client.get(BASE)
    assert page.status == 200 and await page.text() == f"page of {SHOP.id}"


async def test_a_wrong_key_is_refused_and_never_logged(client, capsys):
    resp = await sign_in(client, "kpk_guessed-key")
    html = await resp.text()
    assert resp.status == 401 and "Ключ не подошёл" in html
    assert COOKIE not in set_cookies(resp)
    assert "kpk_guessed-key" not in capsys.readouterr().err
    page = await client.get(BASE, allow_redirects=False)
    assert page.status == 303 and page.headers["Location"] == auth.SIGN_IN


async def test_a_disabled_shop_cannot_sign_in(client):
    client.app[TENANTS].active = False
    assert (await sign_in(client)).status == 401


async def test_sign_in_without_the_form_token_is_refused(client):
    await client.get(auth.SIGN_IN)  # the cookie is set, but the form's token is not sent
    resp = await client.post(auth.SIGN_IN, data={"api_key": KEY}, allow_redirects=False)
    assert resp.status == 403
    other = await client.post(
        auth.SIGN_IN, data={"api_key": KEY, "csrf": "forged"}, allow_redirects=False
    )
    assert other.status == 403 and COOKIE not in set_cookies(other)


async def test_an_empty_key_is_named(client):
    resp = await sign_in(client, "   ")
    assert resp.status == 422 and "Введите API-ключ" in await resp.text()


async def test_wrong_keys_are_throttled_per_address_even_before_the_right_one(client):
    for _ in range(3):
        assert (await sign_in(client, "kpk_wrong")).status == 401
    refused = await sign_in(client, "kpk_wrong")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Слишком много" in await refused.text()
    assert (await sign_in(client)).status == 429  # the right key waits too


async def test_every_post_needs_the_session_csrf_token(client):
    await sign_in(client)
    page_token = client.app[auth.SESSIONS]
    assert (await client.post(f"{BASE}/act", data={})).status == 403
    assert (await client.post(f"{BASE}/act", data={"csrf": "x" * 43})).status == 403
    session_id = client.session.cookie_jar.filter_cookies(client.make_url(BASE))[COOKIE].value
    token = (await page_token.load(session_id)).csrf
    ok = await client.post(f"{BASE}/act", data={"csrf": token})
    assert ok.status == 200 and await ok.text() == "done"


async def test_a_post_without_a_session_is_401(client):
    resp = await client.post(f"{BASE}/act", data={"csrf": "x"}, allow_redirects=False)
    assert resp.status == 401


async def test_sign_out_ends_the_session_on_the_server(client):
    await sign_in(client)
    store = client.app[auth.SESSIONS]
    session_id = client.session.cookie_jar.filter_cookies(client.make_url(BASE))[COOKIE].value
    token = (await store.load(session_id)).csrf
    assert (await client.post(f"{BASE}/sign-out", data={})).status == 403  # CSRF here too
    out = await client.post(f"{BASE}/sign-out", data={"csrf": token}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"].startswith(auth.SIGN_IN)
    assert await store.load(session_id) is None
    # the old cookie, replayed, opens nothing
    client.session.cookie_jar.update_cookies({COOKIE: session_id}, client.make_url(BASE))
    page = await client.get(BASE, allow_redirects=False)
    assert page.status == 303


async def test_a_rotated_out_key_ends_its_sessions(client):
    await sign_in(client)
    assert (await client.get(BASE)).status == 200
    client.app[auth.KEY_CHECK].valid.clear()  # the key expired after its rotation grace
    page = await client.get(BASE, allow_redirects=False)
    assert page.status == 303 and page.headers["Location"] == auth.SIGN_IN


async def test_cookies_are_secure_when_the_public_url_is_https():
    async with TestClient(TestServer(make_app(public_url="https://shop.example"))) as c:
        resp = await c.get(auth.SIGN_IN)
        assert set_cookies(resp)[auth.PRE_COOKIE]["secure"]
