"""HTML for the dashboard: escaping, the page frame, tables, and the security headers.

Plain Python string building, no template engine: every value that comes from data goes through
`e()` (html.escape, quotes included); helpers take already-safe fragments only where named so.
The pages need no JavaScript except the live updates; styles and the script are files served by
Kopilka itself (no CDN), and the Content-Security-Policy allows nothing else.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from ingest import dashboard_i18n as i18n
from ingest.context import SETTINGS
from ingest.dashboard_session import Session
from kopilka.directory.tenants import Tenant

BASE = "/dashboard"
STATIC = f"{BASE}/static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def e(value: object) -> str:
    """Text for HTML (element content and quoted attribute values)."""
    return html.escape("" if value is None else str(value), quote=True)


@dataclass
class View:
    """What every page needs: the language, the signed-in shop (if any), cookie security."""

    request: web.Request
    lang: str
    lang_asked: bool
    secure: bool
    session: Session | None = None
    session_id: str | None = None
    tenant: Tenant | None = None
    flash: list[str] = field(default_factory=list)

    @property
    def t(self) -> i18n.Translate:
        return i18n.translator(self.lang)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tenant.rules.timezone if self.tenant else "Europe/Moscow")

    def when(self, value: str | datetime | None) -> str:
        """A timestamp in the shop's time zone, to the minute (or seconds when `exact`)."""
        if not value:
            return self.t("common.none")
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")


def view_of(request: web.Request) -> View:
    lang, asked = i18n.chosen(request)
    public = request.app[SETTINGS].public_url or ""
    return View(request, lang, asked, request.secure or public.startswith("https://"))


def csrf_field(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(token)}">'


def table(caption: str, headers: Iterable[str], rows: Iterable[Iterable[str]], **attrs) -> str:
    """A table; `rows` hold fragments that are already HTML (escape data with e())."""
    extra = "".join(f' {k.replace("_", "-")}="{e(v)}"' for k, v in attrs.items())
    headers = list(headers)
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    labels = [f' data-label="{e(h)}"' if h else "" for h in headers]
    body = "".join(
        "<tr>"
        + "".join(f"<td{label}>{c}</td>" for label, c in zip(labels, row, strict=True))
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="scroll"><table{extra}><caption>{e(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def definitions(items: Iterable[tuple[str, str]]) -> str:
    """A <dl>; values are HTML fragments."""
    return "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def event_types_text(view: View, types: list[str]) -> str:
    """An endpoint's or chat's event types; every type when the list is empty or ["*"]."""
    return view.t("common.all_events") if types in (["*"], []) else ", ".join(types)


_NAV = (
    ("nav.overview", ""),
    ("nav.customers", "/customers"),
    ("nav.webhooks", "/webhooks"),
    ("nav.outbound", "/outbound"),
    ("nav.telegram", "/telegram"),
)


def _nav(view: View, current: str) -> str:
    t = view.t
    links = "".join(
        f'<li><a href="{BASE}{path}"{" aria-current=page" if path == current else ""}>'
        f"{e(t(key))}</a></li>"
        for key, path in _NAV
    )
    sign_out = (
        f'<form method="post" action="{BASE}/sign-out" class="inline">'
        f"{csrf_field(view.session.csrf)}"
        f'<button type="submit" class="link">{e(t("nav.sign_out"))}</button></form>'
        if view.session
        else ""
    )
    return f'<nav aria-label="{e(t("nav.label"))}"><ul>{links}</ul>{sign_out}</nav>'


def _lang_link(view: View) -> str:
    other = i18n.other(view.lang)
    query = {k: v for k, v in view.request.query.items() if k != "lang"} | {"lang": other}
    href = view.request.rel_url.with_query(query)
    return (
        f'<a class="lang" href="{e(str(href))}" hreflang="{other}" lang="{other}">'
        f"{e(view.t('lang.switch'))}</a>"
    )


def page(
    view: View,
    title: str,
    body: str,
    *,
    current: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    live: bool = False,
) -> web.Response:
    t = view.t
    shop = f'<span class="shop">{e(view.tenant.name)}</span>' if view.tenant else ""
    nav = _nav(view, current) if view.session and current is not None else ""
    flash = "".join(f'<p class="flash" role="status">{e(m)}</p>' for m in view.flash)
    script = f'<script src="{STATIC}/dashboard.js" defer></script>' if live else ""
    document = f"""<!doctype html>
<html lang="{view.lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · {e(t("app.title"))}</title>
<link rel="stylesheet" href="{STATIC}/dashboard.css">
{script}
</head>
<body>
<a class="skip" href="#main">{e(t("nav.skip"))}</a>
<header><p class="brand">{e(t("app.title"))}</p>{shop}{_lang_link(view)}</header>
{nav}
<main id="main" tabindex="-1"><h1>{e(title)}</h1>{flash}{body}</main>
</body>
</html>"""
    response = web.Response(
        text=document,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )
    if view.lang_asked:
        i18n.remember(response, view.lang, secure=view.secure)
    return response


async def form(request: web.Request):
    """The posted form; an unreadable one (a broken multipart body, a bad charset) reads as
    empty, so it fails its CSRF check (403) instead of answering 500."""
    try:
        return await request.post()
    except web.HTTPException:
        raise  # e.g. 413: aiohttp's own answer
    except Exception:  # whatever the body made the parser raise
        return MultiDictProxy(MultiDict())


def redirect(view: View, location: str) -> web.Response:
    """303 See Other (a POST answered with a GET of `location`)."""
    response = web.Response(
        status=303,
        text=f'<!doctype html><a href="{html.escape(location)}">{html.escape(location)}</a>',
        content_type="text/html",
        charset="utf-8",
        headers={"Location": location, **SECURITY_HEADERS},
    )
    if view.lang_asked:
        i18n.remember(response, view.lang, secure=view.secure)
    return response
