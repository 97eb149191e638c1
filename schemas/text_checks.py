"""Text the core can hold: no control characters, no lone surrogates, in any field or field name.

Postgres refuses NUL in `text` and `jsonb`, and text that is not valid Unicode (a lone surrogate
such as JSON's `"\\ud800"` cannot even be encoded to UTF-8). A value the engine accepted and
Postgres then refused would make the read model drift from the ledger for good, so the edge
refuses it instead: 422 naming the field.

Decided here, once for every action and format:

- Lone surrogates (U+D800..U+DFFF) are refused everywhere, in names and values.
- C0 controls (U+0000..U+001F), DEL (U+007F) and C1 controls (U+0080..U+009F) are refused in
  every field name and value, except TAB, LF and CR in values: free text (a name, a description,
  a product, a Tilda textarea) legitimately carries them, and Postgres stores them.
- Identifiers (order id, refund id, referral code) are stricter: `identifier()` also refuses
  TAB, LF and CR inside them (around them they are stripped as any whitespace is).

The walk is iterative and sees every string of the decoded body, including fields Kopilka does
not use: a shop whose form sends NUL somewhere has a bug worth hearing about.
"""

from __future__ import annotations

import re
from typing import Any

from schemas.errors import InboundError

# Allowed in values: TAB, LF, CR. Never anywhere: other C0, DEL, C1, lone surrogates.
_BAD_IN_VALUE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_IN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_NAME_SHOWN = 80


def describe(ch: str) -> str:
    """'U+0000 (a control character)' or 'U+D800 (a lone surrogate)'."""
    if "\udc80" <= ch <= "\udcff":
        kind = "a lone surrogate, or a byte that is not UTF-8"
    elif _SURROGATE.match(ch):
        kind = "a lone surrogate"
    else:
        kind = "a control character"
    return f"U+{ord(ch):04X} ({kind})"


def shown(name: str) -> str:
    """A field name safe to put in an answer: bad characters as \\uXXXX, at most 80 chars."""
    name = name[:MAX_NAME_SHOWN]
    return _BAD_IN_NAME.sub(lambda m: f"\\u{ord(m.group()):04x}", name)


def _refuse(field: str, ch: str, where: str) -> InboundError:
    return InboundError(
        422, "invalid_field", f"{where} contains {describe(ch)}, which is not allowed", field
    )


def check_value(field: str, text: str) -> None:
    """Raise 422 for a string value holding what the core cannot store."""
    bad = _BAD_IN_VALUE.search(text)
    if bad is not None:
        raise _refuse(field, bad.group(), "the value")


def identifier(field: str, text: str) -> str:
    """An identifier's text: also refuses TAB, LF and CR inside it."""
    check_value(field, text)
    bad = re.search("[\t\n\r]", text)
    if bad is not None:
        raise _refuse(field, bad.group(), "the identifier")
    return text


def plain_json(text: str) -> bool:
    """True when no name or string value parsed from this JSON text can hold a refused
    character, so `check_tree` has nothing to find: the text has no escape (a backslash is the
    only way to write a character other than itself) and no refused character of its own (raw
    TAB/LF/CR inside a JSON string are already a syntax error). One scan at C speed instead of
    a walk over every field; anything else still gets the walk, which names the field."""
    return "\\" not in text and _BAD_IN_VALUE.search(text) is None


def check_tree(data: Any, prefix: str = "", skip: frozenset[str] = frozenset()) -> None:
    """Raise 422 naming the first field (dotted path) whose name or string value is refused.

    `prefix` is the path of `data` itself ("" for the body, "payload." for an object inside);
    `skip` lists paths (as named in errors) whose subtree another check covers (batch items,
    which are refused one by one).
    """
    stack: list[tuple[str, Any]] = [(prefix, data)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            check_value(_field_name(path), node)
        elif isinstance(node, dict):
            children = []
            for key, value in node.items():
                if isinstance(key, str):
                    bad = _BAD_IN_NAME.search(key)
                    if bad is not None:
                        raise _refuse(path + shown(key), bad.group(), "the field name")
                child = f"{path}{key}"
                if child not in skip:
                    children.append((child + ".", value))
            stack.extend(reversed(children))
        elif isinstance(node, list):
            base = path[:-1] if path.endswith(".") else path
            stack.extend((f"{base}[{i}].", item) for i, item in reversed(list(enumerate(node))))


def _field_name(path: str) -> str:
    return path[:-1] if path.endswith(".") else path
