"""What Tilda posts: one order as a form (bracket keys, decoded by `body.parse_form`), a JSON
object or a JSON array of them; field names in any case; ``payment`` as an object or as a JSON
string (HTML-escaped at times); the order id in ``payment.orderid`` or else ``tranid``; the
customer in ``Email``/``Phone``/``Name`` or ``ma_email``/``ma_phone``/``ma_name``; cart lines
as objects or as ``"name=price"`` strings; ``test=test`` alone is the connection check.

These quirks are the models' pre-validators (`prepare`); the models validate the order and are
the OpenAPI document's request schemas for Tilda.
"""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Annotated, Any, ClassVar
from urllib.parse import unquote

from pydantic import ConfigDict, Field, PlainValidator, RootModel, TypeAdapter, ValidationError
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from schemas.errors import InboundError
from schemas.frozen_copy import constructed
from schemas.inbound.body import load_json
from schemas.inbound.fields import (
    MAX_ATTRIBUTE,
    MAX_ATTRIBUTES,
    MAX_ITEMS,
    ArrayCheck,
    Check,
    Email,
    Money,
    OrderId,
    Phone,
    Refusal,
    ShortText,
    Text,
    decimal_text,
    from_inbound,
    invalid,
    order_id,
    refused,
)
from schemas.inbound.model import Hit, InboundModel, Prepared, is_blank, refusal
from schemas.inbound.parsed import ParsedWebhook, Product, Purchase, parsed, purchase
from schemas.text_checks import check_tree, check_value

_ATTRIBUTE_KEYS = frozenset(
    {"promocode", "discount", "subtotal", "formid", "formname", "tranid", "systranid"}
)
_ATTRIBUTE_PREFIXES = ("delivery", "utm_")
_NO_IDENTITY = Refusal("missing_field", "an email or a phone is required", "email")


class TildaProduct(InboundModel):
    """A cart line: an object, or a string ``"name=price"`` (``"name"`` alone: no price)."""

    hidden: ClassVar[frozenset[str]] = frozenset({"listed"})

    quantity: Money | None = None
    price: Money | None = None
    amount: Money | None = None
    name: ShortText | None = None
    # the price of a "name=price" string, as written (not held to the amount limits)
    listed: SkipJsonSchema[Decimal | None] = None

    @classmethod
    def prepare_any(cls, data: Any) -> dict[str, Any]:
        if isinstance(data, str):
            name, eq, price = data.rpartition("=")
            amount = decimal_text(price) if eq else None
            if amount is None or amount < 0:
                name, amount = data, None
            return {"name": name.strip()[:MAX_ATTRIBUTE], "listed": amount}
        if not isinstance(data, dict):
            raise invalid("must be an object or a string", "")
        return super().prepare_any(data)

    def product(self) -> Product:
        """The cart line, with only the numbers it had (validated: no second look)."""
        if self.listed is not None:
            return constructed(Product, name=self.name or "", amount=self.listed)
        numbers = {
            key: value
            for key in ("quantity", "price", "amount")
            if (value := getattr(self, key)) is not None
        }
        return constructed(Product, name=self.name or "", **numbers)


def _lines_or_strings(schema: dict[str, Any]) -> None:
    schema["items"] = {
        "anyOf": [schema["items"], {"type": "string", "description": "'name=price' or a name"}]
    }


class TildaPayment(InboundModel):
    """The order itself; other fields (promocode, discount, subtotal, delivery…) are kept as
    the purchase's attributes."""

    missing: ClassVar[dict[str, tuple[str, str]]] = {
        "orderid": ("missing_field", "order id is required (payment.orderid or tranid)"),
        "amount": ("missing_field", "payment amount is required"),
    }
    children: ClassVar[dict[str, type[InboundModel]]] = {"products": TildaProduct}

    orderid: OrderId = Field(description="Tilda's order number (else the top-level tranid)")
    amount: Money
    products: Annotated[list[TildaProduct], ArrayCheck, Field(max_length=MAX_ITEMS)] = Field(
        default_factory=list, json_schema_extra=_lines_or_strings
    )


def _or_json_string(schema: dict[str, Any]) -> None:
    ref = schema.pop("$ref")
    schema["anyOf"] = [
        {"$ref": ref},
        {"type": "string", "description": "the same object as JSON text (HTML-escaped at times)"},
    ]


def _attributes(value: Any) -> dict[str, str]:
    if isinstance(value, Refusal):
        raise refused(value.code, value.reason, value.path)
    return dict(value)


def _documented_extras(schema: dict[str, Any]) -> None:
    properties = schema["properties"]
    assert isinstance(properties, dict)
    properties["tranid"] = {
        "type": "string",
        "description": "the order id when payment.orderid is absent (also systranid)",
    }
    properties["test"] = {"type": "string", "description": "'test' alone: the connection check"}


class TildaOrder(InboundModel):
    """One Tilda order (a form, a JSON object or an element of a JSON array): fields in any
    case; the customer by email and/or phone; formid, formname, tranid, utm_* and delivery*
    fields and the TILDAUTM cookie's utm_* are kept as the purchase's attributes."""

    model_config = ConfigDict(json_schema_extra=_documented_extras)
    aliases: ClassVar[dict[str, tuple[str, ...]]] = {
        "email": ("email", "ma_email"),
        "phone": ("phone", "ma_phone"),
        "name": ("name", "ma_name"),
    }
    hidden: ClassVar[frozenset[str]] = frozenset({"identity", "lines", "attributes"})
    children: ClassVar[dict[str, type[InboundModel]]] = {
        "payment": TildaPayment,
        "lines": TildaProduct,
    }
    # the cart is validated after the customer, as a field of the order (an order with a bad
    # email and a bad cart line is refused for its email), and named where it was sent
    moved: ClassVar[dict[str, tuple[str, ...]]] = {"lines": ("payment", "products")}

    payment: TildaPayment = Field(json_schema_extra=_or_json_string)
    email: Email | None = Field(None, description="also read from ma_email")
    phone: Phone | None = Field(None, description="any common notation; also ma_phone")
    identity: Check = None
    lines: SkipJsonSchema[Annotated[list[TildaProduct], ArrayCheck]] = Field(default_factory=list)
    name: Text | None = Field(None, description="also read from ma_name")
    attributes: SkipJsonSchema[Annotated[dict[str, str], PlainValidator(_attributes)]] = Field(
        default_factory=dict
    )

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        hits = cls.hits(data)
        values = {field: value for field, (_, value) in hits.items()}
        payment_key, payment = hits.get("payment", ("payment", {}))
        if isinstance(payment, str):
            try:
                payment = load_json(html.unescape(payment), payment_key)
                check_tree(payment, payment_key + ".")
            except InboundError as exc:
                raise from_inbound(exc) from None
        if not isinstance(payment, dict):
            raise invalid("must be an object or a JSON string of one", payment_key)
        paid = TildaPayment.values(payment)
        if "orderid" not in paid:
            tranid = first(data, "tranid", "systranid")
            if tranid is not None:
                try:
                    paid["orderid"] = order_id(tranid[1])
                except PydanticCustomError as exc:
                    reason = (exc.context or {}).get("reason", exc.message())
                    raise refused(exc.type, reason, tranid[0]) from None
        if "products" in paid:
            values["lines"] = paid.pop("products")
        values["payment"] = Prepared(paid)
        if "email" not in values and "phone" not in values:
            values["identity"] = _NO_IDENTITY
        try:
            values["attributes"] = _known_extras(payment, data)
        except InboundError as exc:
            values["attributes"] = Refusal(exc.code, exc.reason, exc.field or "")
        return values

    @classmethod
    def raw_child(cls, field: str, value: Any) -> Any:
        if field == "payment" and isinstance(value, str):
            try:
                return load_json(html.unescape(value), field)
            except InboundError:
                return None
        return value

    def purchase(self, index: int = 0) -> Purchase:
        return purchase(
            order_id=self.payment.orderid,
            amount=self.payment.amount,
            email=self.email,
            phone=self.phone,
            name=self.name,
            products=tuple(line.product() for line in self.lines),
            source="tilda",
            attributes=self.attributes,
            index=index,
        )


class TildaOrders(
    RootModel[Annotated[list[TildaOrder], Field(min_length=1, max_length=MAX_ITEMS)]]
):
    """Tilda's JSON array: one object per order."""


_ORDERS = TypeAdapter(list[TildaOrder])


def first(obj: dict[str, Any], *names: str) -> Hit | None:
    """(key as sent, value) of the first of `names` (lower-case) present and not blank."""
    for name in names:
        for key, value in obj.items():
            if key.lower() == name and not is_blank(value):
                return key, value
    return None


def is_tilda_test(obj: dict[str, Any]) -> bool:
    """Tilda's connection check: ``test=test`` and no payment."""
    test = first(obj, "test")
    return (
        test is not None
        and isinstance(test[1], str)
        and test[1].strip().lower() == "test"
        and first(obj, "payment") is None
    )


def parse_tilda(data: Any, region: str) -> ParsedWebhook:
    """A Tilda body: an object or an array of objects (a form is an object, or an array when
    every key starts with an index)."""
    context = {"region": region}
    if isinstance(data, dict):
        if is_tilda_test(data):
            return parsed("tilda_test")
        try:
            order = TildaOrder.model_validate(data, context=context)
        except ValidationError as exc:
            raise refusal(exc, TildaOrder, data) from None
        return parsed("purchase", purchases=(order.purchase(),))
    if not isinstance(data, list):
        raise InboundError(422, "invalid_field", "body must be a JSON object or array of objects")
    if not data or len(data) > MAX_ITEMS:
        raise InboundError(422, "invalid_field", f"the array must hold 1 to {MAX_ITEMS} orders")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise InboundError(422, "invalid_field", "each element must be an object", f"[{i}]")
    if all(is_tilda_test(item) for item in data):
        return parsed("tilda_test")
    try:
        orders = _ORDERS.validate_python(data, context=context)
    except ValidationError as exc:
        raise refusal(exc, TildaOrder, data) from None
    return parsed("purchase", purchases=tuple(o.purchase(i) for i, o in enumerate(orders)))


def _known_extras(payment: dict[str, Any], top: dict[str, Any]) -> dict[str, str]:
    """Known extra fields (payment's first, then top-level, then UTM from COOKIES)."""
    found: dict[str, str] = {}
    top_known, cookies = _known(top)
    for name, value in [*_known(payment)[0].items(), *top_known.items()]:
        if len(found) >= MAX_ATTRIBUTES:
            break
        if name in found:
            continue
        if isinstance(value, bool):
            found[name] = "true" if value else "false"
        elif isinstance(value, str | int | Decimal):
            found[name] = str(value)[:MAX_ATTRIBUTE]
    if cookies is not None and isinstance(cookies[1], str):
        for name, value in _cookie_utm(cookies[1], cookies[0]).items():
            if len(found) < MAX_ATTRIBUTES:
                found.setdefault(name, value)
    return found


def _known(obj: dict[str, Any]) -> tuple[dict[str, Any], Hit | None]:
    """(lower-case name -> value of the fields kept as attributes, the COOKIES field); a blank
    value never hides a non-blank one under another spelling."""
    picked: dict[str, Any] = {}
    cookies: Hit | None = None
    for key, value in obj.items():
        name = key.lower()
        if name == "cookies" and cookies is None and not is_blank(value):
            cookies = key, value
        if not (name in _ATTRIBUTE_KEYS or name.startswith(_ATTRIBUTE_PREFIXES)):
            continue
        if len(name) > MAX_ATTRIBUTE:
            continue
        if name not in picked or (is_blank(picked[name]) and not is_blank(value)):
            picked[name] = value
    return picked, cookies


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
