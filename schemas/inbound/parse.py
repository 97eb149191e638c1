"""`parse_webhook`: one body of ``POST /api/webhook/{secret}`` to what it means, or the
`InboundError` (400/415/422) that names the field at fault.

Two families share the URL: the standard JSON ``{"action": ..., "payload": {...}}``
(`standard`) and whatever Tilda sends (`tilda`). The body is decoded first (`body`); then the
text checks walk every field unless the JSON text cannot hold a refused character; then the
format's pydantic models validate. Pure and synchronous: the HTTP ingress calls it to answer
4xx at once, the stream normaliser to build commands. Money is always an exact ``Decimal``.
"""

from __future__ import annotations

import codecs
from typing import Any

from schemas.errors import InboundError
from schemas.inbound.body import (
    FORM_MEDIA,
    decode,
    is_json_media,
    load_json,
    media_type,
    parse_form,
)
from schemas.inbound.parsed import ParsedWebhook
from schemas.inbound.standard import parse_standard
from schemas.inbound.tilda import parse_tilda
from schemas.text_checks import check_tree, plain_json


def parse_webhook(
    body: bytes, content_type: str | None, *, phone_region: str = "RU"
) -> ParsedWebhook:
    """Parse and validate one webhook body; raise InboundError (400/415/422) on bad input."""
    media, charset = media_type(content_type)
    is_json = is_json_media(media)
    if media is not None and not is_json and media != FORM_MEDIA:
        raise InboundError(
            415,
            "unsupported_media_type",
            f"content type {media[:80]!r} is not supported; use application/json or {FORM_MEDIA}",
        )
    start = body.lstrip().removeprefix(codecs.BOM_UTF8).lstrip()
    if not start:
        raise InboundError(400, "empty_body", "the request body is empty")
    if media is None:
        is_json = start[:1] in (b"{", b"[")
    plain = False  # True: no field can hold a refused character (one scan of the JSON text)
    if not is_json:
        text = decode(body, charset, "malformed_form", errors="surrogateescape")
        data: Any = parse_form(text, charset)
    else:
        text = decode(body, charset, "malformed_json", errors="surrogateescape")
        data = load_json(text)
        plain = plain_json(text)
        if isinstance(data, dict) and "action" in data:
            return parse_standard(data, phone_region, plain)
    if not plain:
        check_tree(data)
    return parse_tilda(data, phone_region)
