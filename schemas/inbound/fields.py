"""The value types of inbound fields: how each is read, its limits, and its JSON Schema.

Each type is a pydantic annotation whose validator accepts what shops really send (an order id
as a string or an integer, an amount as a JSON number or a numeric string, a phone in any
common notation) and refuses the rest with a pydantic error of type ``invalid_field`` whose
``reason`` is the answer's; `schemas.inbound.model` turns it into the `InboundError` naming the
field. The JSON Schema of each type is what the OpenAPI document shows.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, NamedTuple

from pydantic import BeforeValidator, PlainValidator, ValidationInfo, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from schemas.errors import InboundError
from schemas.identity import MAX_EMAIL_LENGTH, normalize_email, normalize_phone
from schemas.text_checks import identifier

MAX_ITEMS = 50_000  # a batch of 50,000 small purchases is about 3.5 MB
MAX_INT_DIGITS = 12
MAX_FRACTION_DIGITS = 12
MAX_NUMBER_TEXT = 64
MAX_ORDER_ID = 128
MAX_TEXT = 1024
MAX_ATTRIBUTE = 256
MAX_ATTRIBUTES = 64
MAX_POINTS = 10**12
_DIGITS = frozenset("0123456789")
_INT_LIMIT = 10**MAX_INT_DIGITS


def refused(code: str, reason: str, path: str | None = None) -> PydanticCustomError:
    """A pydantic error carrying the answer: its code, reason and, for a refusal of a whole
    object, the field's path inside it (``""``: the object itself)."""
    ctx: dict[str, Any] = {"reason": reason}
    if path is not None:
        ctx["path"] = path
    return PydanticCustomError(code, "{reason}", ctx)


def invalid(reason: str, path: str | None = None) -> PydanticCustomError:
    return refused("invalid_field", reason, path)


def from_inbound(exc: InboundError) -> PydanticCustomError:
    """An InboundError of a check run inside a validator (its field relative to the object)."""
    return refused(exc.code, exc.reason, exc.field or "")


class Refusal(NamedTuple):
    """What a `Check` field refuses: set by a model's pre-validator, raised in field order."""

    code: str
    reason: str
    path: str


def _check(value: Any) -> None:
    if isinstance(value, Refusal):
        raise refused(value.code, value.reason, value.path)


# A hidden field that holds None, or a Refusal found while the object was prepared: raised
# where the field stands, so the first error is the one the object's field order names first.
Check = SkipJsonSchema[Annotated[None, PlainValidator(_check)]]


def decimal_text(text: str) -> Decimal | None:
    """Plain decimal notation ("24450", "-1.5", ".5") to Decimal; anything else None."""
    text = text.strip()
    digits = text[1:] if text[:1] in ("+", "-") else text
    whole, _, fraction = digits.partition(".")
    if len(text) > MAX_NUMBER_TEXT or not whole + fraction or not _DIGITS.issuperset(whole):
        return None
    return Decimal(text) if _DIGITS.issuperset(fraction) else None


def money(value: Any) -> Decimal:
    """A non-negative exact Decimal from a JSON number or a numeric string."""
    if type(value) is int and 0 <= value < _INT_LIMIT:  # the common case, checked at once
        return Decimal(value)
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value if value.is_finite() else None
    elif isinstance(value, str):
        number = decimal_text(value)
    else:
        number = None
    if number is None:
        raise invalid("must be a number or a numeric string")
    if number < 0:
        raise invalid("must not be negative")
    if not number.is_zero() and number.adjusted() >= MAX_INT_DIGITS:
        raise invalid(f"has more than {MAX_INT_DIGITS} integer digits")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_FRACTION_DIGITS:
        raise invalid(f"has more than {MAX_FRACTION_DIGITS} decimal places")
    if isinstance(exponent, int) and exponent > 0:
        number = number.quantize(Decimal(1))
    return abs(number) if number.is_zero() else number


def order_id(value: Any) -> str:
    """An identifier the shop chose: a string or an integer, at most MAX_ORDER_ID characters."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise invalid("must be a string or an integer")
    ident: str = value.strip()
    if not ident.isprintable():  # printable text holds no character identifier() refuses
        try:
            identifier("", ident)
        except InboundError as exc:
            raise from_inbound(exc) from None
    if len(ident) > MAX_ORDER_ID:
        raise invalid(f"is longer than {MAX_ORDER_ID} characters")
    return ident


def read_text(value: Any, limit: int) -> str | None:
    """An optional string (integers accepted), stripped and truncated to `limit`."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise invalid("must be a string")
    return value.strip()[:limit] or None


def text(limit: int) -> PlainValidator:
    def read(value: Any) -> str | None:
        if isinstance(value, str):
            return value.strip()[:limit] or None
        return read_text(value, limit)

    return PlainValidator(read)


# what normalize_email accepts, in ASCII: printable, no space, one "@" with something before
# it, a domain with a dot, neither first nor last, and no ".."
_PLAIN_EMAIL = re.compile(r"[!-?A-~]+@(?!\.)(?!.*\.\.)[!-?A-~]*\.[!-?A-~]*(?<!\.)")


def email(value: Any) -> str:
    """The email normalised (`identity.normalize_email`); common ASCII addresses are matched
    by one regular expression (equal results, tests/schemas/test_inbound_fields.py)."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if len(lowered) <= MAX_EMAIL_LENGTH and _PLAIN_EMAIL.fullmatch(lowered):
            return lowered
    try:
        return normalize_email(value)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def phone(value: Any, info: ValidationInfo) -> str:
    """The phone as sent (stripped), once it reads as a possible number in the shop's region
    (the validation context's "region"); the core stores it in E.164."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    region = info.context["region"] if info.context else "RU"
    try:
        normalize_phone(value, region)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    return str(value).strip()


def points(value: Any) -> int:
    number = money(value)
    if number != number.to_integral_value() or number <= 0 or number > MAX_POINTS:
        raise invalid(f"must be a whole number of points from 1 to {MAX_POINTS}")
    return int(number)


def array(value: Any) -> Any:
    if not isinstance(value, list):
        raise invalid("must be an array")
    if len(value) > MAX_ITEMS:
        raise invalid(f"has more than {MAX_ITEMS} elements")
    return value


_MONEY_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": 10**MAX_INT_DIGITS},
        {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,12})?$"},
    ],
    "description": "a number or a numeric string; exact decimal, at most 12 integer and 12 "
    "fraction digits",
}
_ORDER_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_ORDER_ID, "pattern": r"\S"},
        {"type": "integer"},
    ]
}

Money = Annotated[Decimal, PlainValidator(money), WithJsonSchema(_MONEY_SCHEMA)]
OrderId = Annotated[str, PlainValidator(order_id), WithJsonSchema(_ORDER_SCHEMA)]
Email = Annotated[
    str,
    PlainValidator(email),
    WithJsonSchema({"type": "string", "maxLength": 254, "format": "email"}),
]
Phone = Annotated[
    str,
    PlainValidator(phone),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 64,
            "description": "any common notation, read in the shop's region (RU by default)",
        }
    ),
]
Points = Annotated[
    int,
    PlainValidator(points),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_POINTS},
                {"type": "string", "pattern": r"^[0-9]{1,12}$"},
            ],
            "description": "whole points, at least 1",
        }
    ),
]
Text = Annotated[str, text(MAX_TEXT), WithJsonSchema({"type": "string", "maxLength": MAX_TEXT})]
ShortText = Annotated[
    str, text(MAX_ATTRIBUTE), WithJsonSchema({"type": "string", "maxLength": MAX_ATTRIBUTE})
]
# (a list type's own check would run first: the array check is a BeforeValidator)
ArrayCheck = BeforeValidator(array)
