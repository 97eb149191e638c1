"""The dashboard's languages: Russian by default, English on request (`?lang=en`, remembered in a
cookie). Each language's strings live in one catalogue module (dashboard_lang_<code>.py)."""

from __future__ import annotations

import string
from collections.abc import Callable

from aiohttp import web

from ingest import dashboard_lang_en, dashboard_lang_ru

CATALOGUES: dict[str, dict[str, str]] = {
    "ru": dashboard_lang_ru.STRINGS,
    "en": dashboard_lang_en.STRINGS,
}
DEFAULT = "ru"
COOKIE = "kopilka_lang"
Translate = Callable[..., str]


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def translator(lang: str) -> Translate:
    """`t(key, **fields)` in `lang`; an unknown key is a bug, so it raises KeyError."""
    catalogue = CATALOGUES[lang]

    def t(key: str, **fields: object) -> str:
        text = catalogue[key]
        return text.format(**fields) if fields else text

    return t


def chosen(request: web.Request) -> tuple[str, bool]:
    """The request's language, and whether it was asked for now (`?lang=`: remember it)."""
    asked = request.query.get("lang")
    if asked in CATALOGUES:
        return asked, True
    remembered = request.cookies.get(COOKIE)
    return (remembered if remembered in CATALOGUES else DEFAULT), False


def other(lang: str) -> str:
    return "en" if lang == "ru" else "ru"


def remember(response: web.StreamResponse, lang: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        lang,
        max_age=365 * 24 * 3600,
        path="/dashboard",
        httponly=True,
        samesite="Strict",
        secure=secure,
    )
