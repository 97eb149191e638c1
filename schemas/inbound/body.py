"""From the request's bytes to plain data: the media type, the text, JSON or a Tilda form.

Pre-processing before any model sees the body, each step with its own guard: an unknown
media type or charset (415), an empty body (400), JSON nested deeper than `MAX_DEPTH` or with
NaN/Infinity (400), form fields nested too deep or sent both as a value and as a group (400),
more than `MAX_FORM_FIELDS` fields (422). JSON numbers are exact `Decimal`s.
"""

from __future__ import annotations

import codecs
import json
import re
from decimal import Decimal
from typing import Any, NoReturn
from urllib.parse import parse_qsl

from schemas.errors import InboundError
from schemas.text_checks import shown

MAX_DEPTH = 32
MAX_FORM_FIELDS = 50_000
JSON_MEDIA = frozenset({"application/json", "text/json"})
FORM_MEDIA = "application/x-www-form-urlencoded"
_JSON_SPECIAL = re.compile(r'["\\\[\]{}]')


def media_type(content_type: str | None) -> tuple[str | None, str]:
    """(lower-case media type or None when absent, charset defaulting to utf-8)."""
    if not content_type or not content_type.strip():
        return None, "utf-8"
    media, *params = content_type.split(";")
    charset = "utf-8"
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip(' "'):
            charset = value.strip(' "')
    return media.strip().lower(), charset


def is_json_media(media: str | None) -> bool:
    return media in JSON_MEDIA or (
        media is not None and media.startswith("application/") and media.endswith("+json")
    )


def decode(body: bytes, charset: str, code: str, errors: str = "strict") -> str:
    """Bytes to text in the declared charset (a UTF-8 BOM is tolerated). For UTF-8, `errors`
    "surrogateescape" lets the field checks name the field that holds bytes that are not UTF-8.
    """
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        raise InboundError(
            415, "unsupported_media_type", f"unknown charset {charset[:40]!r}"
        ) from None
    try:
        if name == "utf-8":
            return body.decode("utf-8-sig", errors)
        return body.decode(name)
    except UnicodeDecodeError as exc:
        raise InboundError(400, code, f"body is not valid {name} text (byte {exc.start})") from None


class _NonFiniteNumber(ValueError):
    pass


def _reject_constant(name: str) -> NoReturn:
    raise _NonFiniteNumber(name)


# one decoder for every body: json.loads(..., parse_float=...) builds a new one per call
_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def load_json(text: str, field: str | None = None) -> Any:
    """json.loads with exact Decimals and a nesting guard.

    Errors are 400 malformed_json for the body, or 422 invalid_field for a JSON string nested
    in a field (``field`` given).
    """

    def fail(reason: str) -> InboundError:
        if field is None:
            return InboundError(400, "malformed_json", reason)
        return InboundError(422, "invalid_field", reason, field)

    if _too_deep(text):
        raise fail(f"JSON is nested deeper than {MAX_DEPTH} levels")
    try:
        return _JSON.decode(text)
    except _NonFiniteNumber as exc:
        raise fail(f"{exc} is not allowed in JSON") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno} (char {exc.pos})"
        raise fail(f"invalid JSON at {where}: {exc.msg}") from None
    except (ValueError, RecursionError):
        raise fail("invalid JSON: a number is too long") from None


def _too_deep(text: str) -> bool:
    """Whether brackets outside strings nest deeper than MAX_DEPTH; linear, no recursion."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth, in_string, escaped_at = 0, False, -1
    for match in _JSON_SPECIAL.finditer(text):
        pos, ch = match.start(), match.group()
        if pos == escaped_at:
            continue
        if in_string:
            if ch == "\\":
                escaped_at = pos + 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def parse_form(text: str, charset: str) -> Any:
    """Form fields with bracket keys (``a[b][0][c]=v``) decoded into nested dicts and lists (a
    list at the top too, when every key starts with an index: ``0[orderid]=…``)."""
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding=charset,
            errors="surrogateescape" if codecs.lookup(charset).name == "utf-8" else "strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise InboundError(
            400, "malformed_form", f"percent-encoded bytes are not valid {charset}"
        ) from None
    except ValueError:
        raise InboundError(
            422, "invalid_field", f"more than {MAX_FORM_FIELDS} form fields"
        ) from None
    root: dict[str, Any] = {}
    for key, value in pairs:
        path = _split_key(key)
        if len(path) > MAX_DEPTH:
            raise InboundError(
                400, "malformed_form", f"field nested deeper than {MAX_DEPTH} levels", shown(key)
            )
        node = root
        for part in path[:-1]:
            node = node.setdefault(part or str(len(node)), {})
            if not isinstance(node, dict):
                raise _form_conflict(key)
        last = path[-1] or str(len(node))
        if isinstance(node.get(last), dict):
            raise _form_conflict(key)
        node[last] = value
    return _listify(root)


def _form_conflict(key: str) -> InboundError:
    return InboundError(
        400, "malformed_form", "field is sent both as a value and as a group", shown(key)
    )


def _split_key(key: str) -> list[str]:
    """``a[b][0]`` -> ["a", "b", "0"]; anything not well-bracketed stays one flat name."""
    head, bracket, rest = key.partition("[")
    if not bracket or not head or not rest.endswith("]"):
        return [key]
    parts = rest[:-1].split("][")
    if any("[" in part or "]" in part for part in parts):
        return [key]
    return [head, *parts]


def _listify(node: dict[str, Any]) -> Any:
    """Turn dicts whose keys are all indices into lists ordered by index."""
    for key, value in node.items():
        if isinstance(value, dict):
            node[key] = _listify(value)
    if node and all(key.isascii() and key.isdigit() for key in node):
        return [node[key] for key in sorted(node, key=int)]
    return node
