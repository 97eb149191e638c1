"""The dashboard's languages: Russian by default, English on request (`?lang=en`, remembered in a
cookie). Each language's strings live in one catalogue module (dashboard_lang_<code>.py); the
event types' names come with the event types."""

from __future__ import annotations

import string
from collections.abc import Callable

from aiohttp import web

from ingest import dashboard_lang_en, dashboard_lang_ru
from schemas.events import EVENT_TYPES


def _event_labels(lang: str) -> dict[str, str]:
    """`event.<type>`: each event type names itself (schemas.event_model's `labels`; its type
    where it does not, rather than an ingress that cannot start)."""
    return {f"event.{kind}": model.labels.get(lang, kind) for kind, model in EVENT_TYPES.items()}


CATALOGUES: dict[str, dict[str, str]] = {
    "ru": {**dashboard_lang_ru.STRINGS, **_event_labels("ru")},
    "en": {**dashboard_lang_en.STRINGS, **_event_labels("en")},
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
