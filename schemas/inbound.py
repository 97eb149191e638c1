"""Parse one body of ``POST /api/webhook/{secret}`` into canonical purchases.

Two families share the URL: the standard JSON ``{"action": ..., "payload": {...}}`` and
whatever Tilda sends (form-urlencoded with bracket keys, a JSON object or array, ``payment`` as an
object or as a JSON string, ...). Pure and synchronous: the HTTP ingress calls it to answer 4xx
at once, the stream normaliser to build commands. Money is always an exact ``Decimal``.
"""

from __future__ import annotations

import codecs
import html
import json
import re
from decimal import Decimal
from typing import Any, Literal, NoReturn
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel, ConfigDict, Field

from schemas.errors import InboundError
from schemas.frozen_copy import constructed, replaced
from schemas.identity import normalize_email, normalize_phone
from schemas.text_checks import check_tree, check_value, identifier, plain_json, shown

MAX_DEPTH = 32
MAX_ITEMS = 50_000  # a batch of 50,000 small purchases is about 3.5 MB
MAX_FORM_FIELDS = 50_000
MAX_INT_DIGITS = 12
MAX_FRACTION_DIGITS = 12
MAX_NUMBER_TEXT = 64
MAX_ORDER_ID = 128
MAX_TEXT = 1024
MAX_ATTRIBUTE = 256
MAX_ATTRIBUTES = 64

SUPPORTED_ACTIONS = ("purchase", "batch_purchase", "register_user", "spend_bonuses", "refund")
MAX_POINTS = 10**12
_ATTRIBUTE_KEYS = frozenset(
    {"promocode", "discount", "subtotal", "formid", "formname", "tranid", "systranid"}
)
_ATTRIBUTE_PREFIXES = ("delivery", "utm_")
_JSON_MEDIA = frozenset({"application/json", "text/json"})
_FORM_MEDIA = "application/x-www-form-urlencoded"
_JSON_SPECIAL = re.compile(r'["\\\[\]{}]')
_DIGITS = frozenset("0123456789")


class Product(BaseModel):
    """One cart line as the shop sent it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    quantity: Decimal | None = None
    price: Decimal | None = None
    amount: Decimal | None = None


class Purchase(BaseModel):
    """A canonical purchase, whatever format it arrived in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: str
    amount: Decimal = Field(ge=0)
    email: str | None = None
    phone: str | None = None
    name: str | None = None
    description: str | None = None
    products: tuple[Product, ...] = ()
    source: Literal["standard", "tilda"]
    attributes: dict[str, str] = Field(default_factory=dict)
    index: int = Field(0, description="position in the request (batch item, Tilda array element)")


class ItemError(BaseModel):
    """One item of a batch that was refused, and why (the rest of the batch goes ahead)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    order_id: str | None = None
    error: str
    field: str | None = None
    reason: str


ReferrerKind = Literal["code", "email", "phone"]
# the fields that name a referrer, by kind (lower-case: _Fields is case-insensitive)
_REFERRER_FIELDS: tuple[tuple[ReferrerKind, tuple[str, ...]], ...] = (
    ("code", ("referralcode", "referrercode")),
    ("email", ("referreremail",)),
    ("phone", ("referrerphone",)),
)


class Registration(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str | None = None
    phone: str | None = None
    name: str | None = None
    referrer_kind: ReferrerKind | None = None
    referrer: str | None = Field(None, description="code, email or (raw) phone of the referrer")


class Spend(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str | None = None
    phone: str | None = None
    order_id: str
    points: int = Field(gt=0)
    order_amount: Decimal | None = None


class Refund(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: str
    refund_id: str | None = None
    amount: Decimal | None = None


Action = Literal[
    "purchase", "batch_purchase", "register_user", "spend_bonuses", "refund", "tilda_test"
]


class ParsedWebhook(BaseModel):
    """The outcome of one request body: what to do, or Tilda's connection check.

    The parser builds it and its purchases without pydantic's validation (`_parsed`,
    `_purchase`): every value was checked by hand on its way in, and the second look cost as
    much as the rest of parsing together; tests/schemas/test_inbound.py holds the results equal
    to validated models."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action
    purchases: tuple[Purchase, ...] = ()
    rejected: tuple[ItemError, ...] = ()
    registration: Registration | None = None
    spend: Spend | None = None
    refund: Refund | None = None


def _parsed(
    action: str,
    purchases: tuple[Purchase, ...] = (),
    rejected: tuple[ItemError, ...] = (),
    registration: Registration | None = None,
    spend: Spend | None = None,
    refund: Refund | None = None,
) -> ParsedWebhook:
    """model_construct with every field given (schemas.frozen_copy.constructed: pydantic's
    own model_construct searches aliases and defaults field by field, dearer than validating)."""
    return constructed(
        ParsedWebhook,
        action=action,
        purchases=purchases,
        rejected=rejected,
        registration=registration,
        spend=spend,
        refund=refund,
    )


def _purchase(
    *,
    order_id: str,
    amount: Decimal,
    source: str,
    email: str | None = None,
    phone: str | None = None,
    name: str | None = None,
    description: str | None = None,
    products: tuple[Product, ...] = (),
    attributes: dict[str, str] | None = None,
) -> Purchase:
    return constructed(
        Purchase,
        order_id=order_id,
        amount=amount,
        email=email,
        phone=phone,
        name=name,
        description=description,
        products=products,
        source=source,
        attributes={} if attributes is None else attributes,
        index=0,
    )


def parse_webhook(
    body: bytes, content_type: str | None, *, phone_region: str = "RU"
) -> ParsedWebhook:
    """Parse and validate one webhook body; raise InboundError (400/415/422) on bad input."""
    media, charset = _media_type(content_type)
    is_json = media in _JSON_MEDIA or (
        media is not None and media.startswith("application/") and media.endswith("+json")
    )
    if media is not None and not is_json and media != _FORM_MEDIA:
        raise InboundError(
            415,
            "unsupported_media_type",
            f"content type {media[:80]!r} is not supported; use application/json or {_FORM_MEDIA}",
        )
    start = body.lstrip().removeprefix(codecs.BOM_UTF8).lstrip()
    if not start:
        raise InboundError(400, "empty_body", "the request body is empty")
    if media is None:
        is_json = start[:1] in (b"{", b"[")
    plain = False  # True: no field can hold a refused character (one scan of the JSON text)
    if not is_json:
        text = _decode(body, charset, "malformed_form", errors="surrogateescape")
        data: Any = _parse_form(text, charset)
    else:
        text = _decode(body, charset, "malformed_json", errors="surrogateescape")
        data = _load_json(text)
        plain = plain_json(text)
        if isinstance(data, dict) and "action" in data:
            return _standard(data, phone_region, plain)
    if not plain:
        check_tree(data)
    return _tilda(data, phone_region)


# --- body decoding -------------------------------------------------------------------------


def _media_type(content_type: str | None) -> tuple[str | None, str]:
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


def _decode(body: bytes, charset: str, code: str, errors: str = "strict") -> str:
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


def _load_json(text: str, field: str | None = None) -> Any:
    """json.loads with exact Decimals and a nesting guard.

    Errors are 400 malformed_json for the body, or 422 invalid_field for a JSON string nested
    in a field (``field`` given).
    """

    def fail(reason: str) -> InboundError:
        if field is None:
            return InboundError(400, "malformed_json", reason)
        return _invalid(field, reason)

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


def _parse_form(text: str, charset: str) -> Any:
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


# --- field access and values ---------------------------------------------------------------


class _Fields:
    """Case-insensitive view of one object; a blank value never hides a non-blank one."""

    def __init__(self, obj: dict[str, Any], prefix: str) -> None:
        self._prefix = prefix
        self._items: dict[str, tuple[str, Any]] = {}
        for key, value in obj.items():
            seen = self._items.get(key.lower())
            if seen is None or (_is_blank(seen[1]) and not _is_blank(value)):
                self._items[key.lower()] = (key, value)

    def path(self, name: str) -> str:
        """Dotted path of a field of this object, for error messages."""
        return self._prefix + name

    def get(self, *names: str) -> tuple[str, Any] | None:
        """(path, value) of the first of ``names`` present and non-blank."""
        for name in names:
            hit = self._items.get(name)
            if hit is not None and not _is_blank(hit[1]):
                return self._prefix + hit[0], hit[1]
        return None

    def items(self) -> list[tuple[str, Any]]:
        """(lower-case name, value) pairs."""
        return [(name, value) for name, (_, value) in self._items.items()]


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _invalid(field: str, reason: str) -> InboundError:
    return InboundError(422, "invalid_field", reason, field)


def _missing(field: str, reason: str) -> InboundError:
    return InboundError(422, "missing_field", reason, field)


def _text(hit: tuple[str, Any] | None, limit: int = MAX_TEXT) -> str | None:
    """An optional string field (integers accepted), stripped and truncated to ``limit``."""
    if hit is None:
        return None
    field, value = hit
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    return value.strip()[:limit] or None


def _decimal_text(text: str) -> Decimal | None:
    """Plain decimal notation ("24450", "-1.5", ".5") to Decimal; anything else None."""
    text = text.strip()
    digits = text[1:] if text[:1] in ("+", "-") else text
    whole, _, fraction = digits.partition(".")
    if len(text) > MAX_NUMBER_TEXT or not whole + fraction or not _DIGITS.issuperset(whole):
        return None
    return Decimal(text) if _DIGITS.issuperset(fraction) else None


def _money(field: str, value: Any) -> Decimal:
    """A non-negative exact Decimal from a JSON number or a numeric string."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value if value.is_finite() else None
    elif isinstance(value, str):
        number = _decimal_text(value)
    else:
        number = None
    if number is None:
        raise _invalid(field, "must be a number or a numeric string")
    if number < 0:
        raise _invalid(field, "must not be negative")
    if not number.is_zero() and number.adjusted() >= MAX_INT_DIGITS:
        raise _invalid(field, f"has more than {MAX_INT_DIGITS} integer digits")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_FRACTION_DIGITS:
        raise _invalid(field, f"has more than {MAX_FRACTION_DIGITS} decimal places")
    if isinstance(exponent, int) and exponent > 0:
        number = number.quantize(Decimal(1))
    return abs(number) if number.is_zero() else number


def _order_id(hit: tuple[str, Any]) -> str:
    field, value = hit
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _invalid(field, "must be a string or an integer")
    value = identifier(field, value.strip())
    if len(value) > MAX_ORDER_ID:
        raise _invalid(field, f"is longer than {MAX_ORDER_ID} characters")
    return value


def _identity(
    email_hit: tuple[str, Any] | None, phone_hit: tuple[str, Any] | None, region: str
) -> tuple[str | None, str | None]:
    """(normalised email, stripped raw phone), each validated."""
    email = phone = None
    if email_hit is not None:
        field, value = email_hit
        try:
            email = normalize_email(value)
        except ValueError as exc:
            raise _invalid(field, str(exc)) from None
    if phone_hit is not None:
        field, value = phone_hit
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        try:
            normalize_phone(value, region)
        except ValueError as exc:
            raise _invalid(field, str(exc)) from None
        phone = value.strip()
    return email, phone


def _array(field: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _invalid(field, "must be an array")
    if len(value) > MAX_ITEMS:
        raise _invalid(field, f"has more than {MAX_ITEMS} elements")
    return value


# --- standard format -----------------------------------------------------------------------


def _standard(obj: dict[str, Any], region: str, plain: bool = False) -> ParsedWebhook:
    action = obj["action"]
    name = action.strip().lower() if isinstance(action, str) else None
    if name not in SUPPORTED_ACTIONS:
        shown = repr(action[:40]) if isinstance(action, str) else "of this type"
        raise InboundError(
            422,
            "unknown_action",
            f"unknown action {shown}; supported: {', '.join(SUPPORTED_ACTIONS)}",
            "action",
        )
    hit = _Fields(obj, "").get("payload")
    if hit is None:
        raise _missing("payload", "payload object is required")
    if not isinstance(hit[1], dict):
        raise _invalid(hit[0], "must be an object")
    payload = _Fields(hit[1], hit[0] + ".")
    items = payload.get("purchases") if name == "batch_purchase" else None
    if not plain:  # batch items are checked one by one (a bad one is refused alone)
        check_tree(obj, skip=frozenset({items[0]}) if items else frozenset())
    if name == "purchase":
        return _parsed(action="purchase", purchases=(_standard_purchase(payload, region),))
    if name == "batch_purchase":
        return _batch(payload, region, plain)
    if name == "register_user":
        return _parsed(action="register_user", registration=_registration(payload, region))
    if name == "spend_bonuses":
        return _parsed(action="spend_bonuses", spend=_spend(payload, region))
    return _parsed(action="refund", refund=_refund(payload))


def _required_identity(payload: _Fields, region: str) -> tuple[str | None, str | None]:
    email, phone = _identity(payload.get("email"), payload.get("phone"), region)
    if email is None and phone is None:
        raise _missing(payload.path("email"), "an email or a phone is required")
    return email, phone


def _required_order(payload: _Fields) -> str:
    order_hit = payload.get("orderid")
    order_id = _order_id(order_hit) if order_hit else ""
    if not order_id:
        raise _missing(payload.path("orderId"), "order id is required")
    return order_id


def _standard_purchase(payload: _Fields, region: str) -> Purchase:
    email, phone = _required_identity(payload, region)
    order_id = _required_order(payload)
    amount_hit = payload.get("amount")
    if amount_hit is None:
        raise _missing(payload.path("amount"), "amount is required")
    return _purchase(
        order_id=order_id,
        amount=_money(*amount_hit),
        email=email,
        phone=phone,
        name=_text(payload.get("name")),
        description=_text(payload.get("description")),
        source="standard",
    )


def _batch(payload: _Fields, region: str, plain: bool = False) -> ParsedWebhook:
    """Each item is its own purchase: bad items are listed with their reason, the rest go."""
    hit = payload.get("purchases")
    if hit is None:
        raise _missing(payload.path("purchases"), "purchases array is required")
    items = _array(*hit)
    if not items:
        raise _invalid(hit[0], "must hold at least one purchase")
    purchases: list[Purchase] = []
    rejected: list[ItemError] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        path = f"{hit[0]}[{i}]"
        order_id = None
        try:
            if not isinstance(item, dict):
                raise _invalid(path, "each purchase must be an object")
            if not plain:
                check_tree(item, path + ".")
            fields = _Fields(item, path + ".")
            purchase = _standard_purchase(fields, region)
            order_id = purchase.order_id
            if order_id in seen:
                raise _invalid(fields.path("orderId"), "the same orderId appears earlier")
        except InboundError as exc:
            rejected.append(
                ItemError(
                    index=i, order_id=order_id, error=exc.code, field=exc.field, reason=exc.reason
                )
            )
            continue
        seen.add(order_id)
        purchases.append(replaced(purchase, index=i))
    if not purchases:
        first = rejected[0]
        raise InboundError(
            422,
            first.error,
            f"no purchase in the batch is valid; first: {first.reason}",
            first.field,
        )
    return _parsed(action="batch_purchase", purchases=tuple(purchases), rejected=tuple(rejected))


def _points(hit: tuple[str, Any]) -> int:
    field, value = hit
    number = _money(field, value)
    if number != number.to_integral_value() or number <= 0 or number > MAX_POINTS:
        raise _invalid(field, f"must be a whole number of points from 1 to {MAX_POINTS}")
    return int(number)


def _spend(payload: _Fields, region: str) -> Spend:
    email, phone = _required_identity(payload, region)
    order_id = _required_order(payload)
    points_hit = payload.get("points")
    if points_hit is None:
        raise _missing(payload.path("points"), "points to spend are required")
    amount_hit = payload.get("orderamount")
    return Spend(
        email=email,
        phone=phone,
        order_id=order_id,
        points=_points(points_hit),
        order_amount=_money(*amount_hit) if amount_hit else None,
    )


def _refund(payload: _Fields) -> Refund:
    order_id = _required_order(payload)
    amount_hit = payload.get("amount")
    amount = None
    if amount_hit is not None:
        amount = _money(*amount_hit)
        if amount.is_zero():
            raise _invalid(
                amount_hit[0], "a refund must be more than 0 (omit it for a full refund)"
            )
    refund_hit = payload.get("refundid")
    refund_id = _order_id(refund_hit) if refund_hit else None
    return Refund(order_id=order_id, refund_id=refund_id or None, amount=amount)


def _registration(payload: _Fields, region: str) -> Registration:
    email, phone = _required_identity(payload, region)
    referrers = [
        (kind, hit) for kind, names in _REFERRER_FIELDS if (hit := payload.get(*names)) is not None
    ]
    if len(referrers) > 1:
        raise _invalid(
            referrers[1][1][0],
            "name the referrer once: referralCode, referrerEmail or referrerPhone",
        )
    kind: ReferrerKind | None = None
    referrer: str | None = None
    if referrers:
        kind, (field, value) = referrers[0]
        if kind == "code":
            referrer = _text((field, value), MAX_ORDER_ID)
            if referrer:
                referrer = identifier(field, referrer).upper()
        elif kind == "email":
            referrer, _ = _identity((field, value), None, region)
        else:
            _, referrer = _identity(None, (field, value), region)
    return Registration(
        email=email,
        phone=phone,
        name=_text(payload.get("name")),
        referrer_kind=kind if referrer else None,
        referrer=referrer,
    )


# --- Tilda ---------------------------------------------------------------------------------


def _tilda(data: Any, region: str) -> ParsedWebhook:
    if isinstance(data, dict):
        if _is_tilda_test(data):
            return _parsed(action="tilda_test")
        return _parsed(action="purchase", purchases=(_tilda_order(data, "", region),))
    if not isinstance(data, list):
        raise InboundError(422, "invalid_field", "body must be a JSON object or array of objects")
    if not data or len(data) > MAX_ITEMS:
        raise InboundError(422, "invalid_field", f"the array must hold 1 to {MAX_ITEMS} orders")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise _invalid(f"[{i}]", "each element must be an object")
    if all(_is_tilda_test(item) for item in data):
        return _parsed(action="tilda_test")
    purchases = tuple(
        replaced(_tilda_order(item, f"[{i}].", region), index=i) for i, item in enumerate(data)
    )
    return _parsed(action="purchase", purchases=purchases)


def _is_tilda_test(obj: dict[str, Any]) -> bool:
    """Tilda's connection check: ``test=test`` and no payment."""
    fields = _Fields(obj, "")
    test = fields.get("test")
    return (
        test is not None
        and isinstance(test[1], str)
        and test[1].strip().lower() == "test"
        and fields.get("payment") is None
    )


def _tilda_order(obj: dict[str, Any], prefix: str, region: str) -> Purchase:
    top = _Fields(obj, prefix)
    payment: Any = {}
    payment_path = top.path("payment")
    hit = top.get("payment")
    if hit is not None:
        payment_path, payment = hit
        if isinstance(payment, str):
            payment = _load_json(html.unescape(payment), payment_path)
            check_tree(payment, payment_path + ".")
        if not isinstance(payment, dict):
            raise _invalid(payment_path, "must be an object or a JSON string of one")
    pay = _Fields(payment, payment_path + ".")

    order_hit = pay.get("orderid") or top.get("tranid", "systranid")
    order_id = _order_id(order_hit) if order_hit else ""
    if not order_id:
        raise _missing(pay.path("orderid"), "order id is required (payment.orderid or tranid)")
    amount_hit = pay.get("amount")
    if amount_hit is None:
        raise _missing(pay.path("amount"), "payment amount is required")
    amount = _money(*amount_hit)
    email, phone = _identity(top.get("email", "ma_email"), top.get("phone", "ma_phone"), region)
    if email is None and phone is None:
        raise _missing(top.path("email"), "an email or a phone is required")
    products_hit = pay.get("products")
    products = () if products_hit is None else _products(*products_hit)
    return _purchase(
        order_id=order_id,
        amount=amount,
        email=email,
        phone=phone,
        name=_text(top.get("name", "ma_name")),
        products=products,
        source="tilda",
        attributes=_attributes(pay, top),
    )


def _products(field: str, value: Any) -> tuple[Product, ...]:
    products = []
    for i, item in enumerate(_array(field, value)):
        path = f"{field}[{i}]"
        if isinstance(item, str):
            name, eq, price = item.rpartition("=")
            amount = _decimal_text(price) if eq else None
            if amount is None or amount < 0:
                name, amount = item, None
            products.append(Product(name=name.strip()[:MAX_ATTRIBUTE], amount=amount))
        elif isinstance(item, dict):
            line = _Fields(item, path + ".")
            numbers = {
                key: _money(*hit)
                for key in ("quantity", "price", "amount")
                if (hit := line.get(key)) is not None
            }
            name = _text(line.get("name"), MAX_ATTRIBUTE) or ""
            products.append(Product(name=name, **numbers))
        else:
            raise _invalid(path, "must be an object or a string")
    return tuple(products)


def _attributes(payment: _Fields, top: _Fields) -> dict[str, str]:
    """Known extra fields (payment's first, then top-level, then UTM from COOKIES)."""
    found: dict[str, str] = {}
    for name, value in [*payment.items(), *top.items()]:
        if len(found) >= MAX_ATTRIBUTES:
            break
        known = name in _ATTRIBUTE_KEYS or name.startswith(_ATTRIBUTE_PREFIXES)
        if not known or len(name) > MAX_ATTRIBUTE or name in found:
            continue
        if isinstance(value, bool):
            found[name] = "true" if value else "false"
        elif isinstance(value, str | int | Decimal):
            found[name] = str(value)[:MAX_ATTRIBUTE]
    cookies = top.get("cookies")
    if cookies is not None and isinstance(cookies[1], str):
        for name, value in _cookie_utm(cookies[1], cookies[0]).items():
            if len(found) < MAX_ATTRIBUTES:
                found.setdefault(name, value)
    return found


def _cookie_utm(cookies: str, field: str) -> dict[str, str]:
    """utm_* pairs of the TILDAUTM cookie (``utm_source%3Dgoogle%7C%7C%7Cutm_medium...``)."""
    for cookie in cookies.split(";"):
        name, _, value = cookie.partition("=")
        if name.strip().upper() != "TILDAUTM":
            continue
        utm: dict[str, str] = {}
        decoded = unquote(value.strip())
        check_value(field, decoded)  # %00 decodes to NUL
        for pair in decoded.split("|"):
            key, eq, val = pair.partition("=")
            key = key.strip().lower()
            if eq and val.strip() and key.startswith("utm_") and len(key) <= MAX_ATTRIBUTE:
                utm.setdefault(key, val.strip()[:MAX_ATTRIBUTE])
        return utm
    return {}
