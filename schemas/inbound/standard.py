"""Kopilka's standard JSON: ``{"action": ..., "payload": {...}}``, one model per action.

The models validate the body and are the OpenAPI document's request schemas. Field names are
read in any case (`model.InboundModel`); the customer is named by ``email`` and/or ``phone``.
A batch's purchases are validated one by one: a bad one is refused alone, with its reason, and
the rest go ahead.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import (
    BeforeValidator,
    Field,
    PlainValidator,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)

from schemas.errors import InboundError
from schemas.inbound.fields import (
    MAX_ITEMS,
    MAX_ORDER_ID,
    Check,
    Email,
    Money,
    OrderId,
    Phone,
    Points,
    Refusal,
    Text,
    array,
    from_inbound,
    invalid,
    money,
    read_text,
)
from schemas.inbound.model import Hit, InboundModel, fold, join, refusal
from schemas.inbound.parsed import (
    ItemError,
    ParsedWebhook,
    Purchase,
    ReferrerKind,
    Refund,
    Registration,
    Spend,
    parsed,
    purchase,
)
from schemas.text_checks import check_tree, identifier

SUPPORTED_ACTIONS = ("purchase", "batch_purchase", "register_user", "spend_bonuses", "refund")
_NO_IDENTITY = Refusal("missing_field", "an email or a phone is required", "email")
_ORDER_MISSING = ("missing_field", "order id is required")


class Identified(InboundModel):
    """A payload naming the customer by email and/or phone (at least one)."""

    model_config = {
        "json_schema_extra": {"anyOf": [{"required": ["email"]}, {"required": ["phone"]}]}
    }
    hidden: ClassVar[frozenset[str]] = frozenset({"identity"})

    email: Email | None = Field(None, examples=["anna@example.com"])
    phone: Phone | None = Field(None, examples=["+7 999 123-45-67"])
    identity: Check = None

    @classmethod
    def prepare(cls, data: dict[str, Any], folded: dict[str, Hit]) -> dict[str, Any]:
        values = super().prepare(data, folded)
        if "email" not in values and "phone" not in values:
            values["identity"] = _NO_IDENTITY
        return values


class PurchasePayload(Identified):
    """A purchase; the customer is named by `email` and/or `phone` (at least one)."""

    missing: ClassVar[dict[str, tuple[str, str]]] = {
        "orderId": _ORDER_MISSING,
        "amount": ("missing_field", "amount is required"),
    }

    orderId: OrderId = Field(description="the shop's order id: one award per order")
    amount: Money = Field(examples=[5000])
    name: Text | None = None
    description: Text | None = None

    def purchase(self, index: int = 0) -> Purchase:
        return purchase(
            order_id=self.orderId,
            amount=self.amount,
            email=self.email,
            phone=self.phone,
            name=self.name,
            description=self.description,
            source="standard",
            index=index,
        )


def _alone(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A batch item's own outcome: the validated payload, or the ValidationError refusing it."""
    try:
        return handler(value)
    except ValidationError as exc:
        return exc


def _purchases(value: Any) -> Any:
    if not array(value):
        raise invalid("must hold at least one purchase")
    return value


class BatchPayload(InboundModel):
    missing: ClassVar[dict[str, tuple[str, str]]] = {
        "purchases": ("missing_field", "purchases array is required")
    }
    children: ClassVar[dict[str, type[InboundModel]]] = {"purchases": PurchasePayload}

    purchases: Annotated[
        list[Annotated[PurchasePayload, WrapValidator(_alone)]],
        BeforeValidator(_purchases),
        Field(min_length=1, max_length=MAX_ITEMS),
    ]

    def outcomes(self) -> list[PurchasePayload | ValidationError]:
        """Each item: its payload, or the error refusing it."""
        return cast(list[PurchasePayload | ValidationError], self.purchases)


def referral_code(value: Any) -> str | None:
    code = read_text(value, MAX_ORDER_ID)
    if not code:
        return code
    try:
        return identifier("", code).upper()
    except InboundError as exc:
        raise from_inbound(exc) from None


_REFERRERS: tuple[tuple[str, ReferrerKind], ...] = (
    ("referralCode", "code"),
    ("referrerEmail", "email"),
    ("referrerPhone", "phone"),
)


class RegisterPayload(Identified):
    """A customer by email and/or phone; the referrer (optional) by one of the three fields."""

    aliases: ClassVar[dict[str, tuple[str, ...]]] = {
        "referralCode": ("referralcode", "referrercode")
    }
    hidden: ClassVar[frozenset[str]] = frozenset({"identity", "referrer"})

    referrer: Check = None
    referralCode: Annotated[
        str,
        PlainValidator(referral_code),
        WithJsonSchema({"type": "string", "maxLength": MAX_ORDER_ID}),
    ] | None = Field(None, description="the referrer's code (also read as referrerCode)")
    referrerEmail: Email | None = None
    referrerPhone: Phone | None = None
    name: Text | None = None

    @classmethod
    def prepare(cls, data: dict[str, Any], folded: dict[str, Hit]) -> dict[str, Any]:
        values = super().prepare(data, folded)
        named = [field for field, _ in _REFERRERS if field in values]
        if len(named) > 1:
            hits = cls.hits(folded)
            values["referrer"] = Refusal(
                "invalid_field",
                "name the referrer once: referralCode, referrerEmail or referrerPhone",
                hits[named[1]][0],
            )
        return values

    def registration(self) -> Registration:
        kind: ReferrerKind | None = None
        referrer: str | None = None
        for field, field_kind in _REFERRERS:
            if getattr(self, field) is not None:
                kind, referrer = field_kind, getattr(self, field)
                break
        return Registration(
            email=self.email,
            phone=self.phone,
            name=self.name,
            referrer_kind=kind if referrer else None,
            referrer=referrer,
        )


class SpendPayload(Identified):
    missing: ClassVar[dict[str, tuple[str, str]]] = {
        "orderId": _ORDER_MISSING,
        "points": ("missing_field", "points to spend are required"),
    }

    orderId: OrderId
    points: Points
    orderAmount: Money | None = Field(
        None, description="needed when the shop caps spends below 100 %"
    )

    def spend(self) -> Spend:
        return Spend(
            email=self.email,
            phone=self.phone,
            order_id=self.orderId,
            points=self.points,
            order_amount=self.orderAmount,
        )


def refund_amount(value: Any) -> Decimal:
    amount = money(value)
    if amount.is_zero():
        raise invalid("a refund must be more than 0 (omit it for a full refund)")
    return amount


class RefundPayload(InboundModel):
    missing: ClassVar[dict[str, tuple[str, str]]] = {"orderId": _ORDER_MISSING}

    orderId: OrderId
    amount: Annotated[Money, PlainValidator(refund_amount)] | None = Field(
        None, description="omit for a full refund of what is left"
    )
    refundId: OrderId | None = Field(None, description="tells apart partial refunds of one order")

    def refund(self) -> Refund:
        return Refund(order_id=self.orderId, refund_id=self.refundId, amount=self.amount)


class Envelope(InboundModel):
    """``{"action": ..., "payload": {...}}``; the action is read stripped, in any case."""

    missing: ClassVar[dict[str, tuple[str, str]]] = {
        "payload": ("missing_field", "payload object is required")
    }

    @classmethod
    def prepare(cls, data: dict[str, Any], folded: dict[str, Hit]) -> dict[str, Any]:
        values = super().prepare(data, folded)
        values["action"] = action_name(data.get("action"))
        return values


class StandardWebhook(Envelope):
    """Kopilka's standard JSON: an action and its payload (here: a purchase)."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "action": "purchase",
                    "payload": {
                        "email": "anna@example.com",
                        "amount": 5000,
                        "orderId": "ORDER-1",
                        "description": "Order #1",
                    },
                }
            ]
        }
    }
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": PurchasePayload}

    action: Literal["purchase"]
    payload: PurchasePayload

    def parsed(self) -> ParsedWebhook:
        return parsed("purchase", purchases=(self.payload.purchase(),))


class BatchWebhook(Envelope):
    """Up to 50,000 purchases (4 MiB); each is its own purchase, refused or accepted alone."""

    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": BatchPayload}

    action: Literal["batch_purchase"]
    payload: BatchPayload


class RegisterWebhook(Envelope):
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": RegisterPayload}

    action: Literal["register_user"]
    payload: RegisterPayload

    def parsed(self) -> ParsedWebhook:
        return parsed("register_user", registration=self.payload.registration())


class SpendWebhook(Envelope):
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": SpendPayload}

    action: Literal["spend_bonuses"]
    payload: SpendPayload

    def parsed(self) -> ParsedWebhook:
        return parsed("spend_bonuses", spend=self.payload.spend())


class RefundWebhook(Envelope):
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": RefundPayload}

    action: Literal["refund"]
    payload: RefundPayload

    def parsed(self) -> ParsedWebhook:
        return parsed("refund", refund=self.payload.refund())


WEBHOOKS: dict[str, type[Envelope]] = {
    "purchase": StandardWebhook,
    "batch_purchase": BatchWebhook,
    "register_user": RegisterWebhook,
    "spend_bonuses": SpendWebhook,
    "refund": RefundWebhook,
}


def action_name(action: Any) -> str | None:
    return action.strip().lower() if isinstance(action, str) else None


def parse_standard(obj: dict[str, Any], region: str, plain: bool = False) -> ParsedWebhook:
    """A standard body (`obj` has "action"). `plain`: the JSON text holds no character the
    field checks refuse (`text_checks.plain_json`), so the walk over every field is skipped."""
    action = obj["action"]
    name = action_name(action)
    if name not in SUPPORTED_ACTIONS:
        shown = repr(action[:40]) if isinstance(action, str) else "of this type"
        raise InboundError(
            422,
            "unknown_action",
            f"unknown action {shown}; supported: {', '.join(SUPPORTED_ACTIONS)}",
            "action",
        )
    model = WEBHOOKS[name]
    payload = model.hits(fold(obj)).get("payload")
    if not plain and payload is not None and isinstance(payload[1], dict):
        # batch items are checked one by one (a bad one is refused alone)
        items = _items(payload) if name == "batch_purchase" else None
        check_tree(obj, skip=frozenset({items[0]}) if items else frozenset())
    try:
        webhook = model.model_validate(obj, context={"region": region})
    except ValidationError as exc:
        raise refusal(exc, model, obj) from None
    if isinstance(webhook, BatchWebhook):
        return _batch(webhook, obj, plain)
    return cast(StandardWebhook, webhook).parsed()


def _items(payload: Hit) -> Hit | None:
    """(path of the batch's purchases as sent, the raw items)."""
    hit = BatchPayload.hits(fold(payload[1])).get("purchases")
    return None if hit is None else (join(payload[0], hit[0]), hit[1])


def _batch(webhook: BatchWebhook, obj: dict[str, Any], plain: bool) -> ParsedWebhook:
    """Each item is its own purchase: bad items are listed with their reason, the rest go."""
    payload = BatchWebhook.hits(fold(obj))["payload"]
    base, raw_items = cast(Hit, _items(payload))
    purchases: list[Purchase] = []
    rejected: list[ItemError] = []
    seen: set[str] = set()
    for i, (raw, item) in enumerate(zip(raw_items, webhook.payload.outcomes(), strict=True)):
        path = f"{base}[{i}]"
        order_id = None
        try:
            if not isinstance(raw, dict):
                raise InboundError(422, "invalid_field", "each purchase must be an object", path)
            if not plain:
                check_tree(raw, path + ".")
            if isinstance(item, ValidationError):
                raise refusal(item, BatchWebhook, obj, ("payload", "purchases", i))
            bought = item.purchase(index=i)
            order_id = bought.order_id
            if order_id in seen:
                key = PurchasePayload.hits(fold(raw))["orderId"][0]
                raise InboundError(
                    422, "invalid_field", "the same orderId appears earlier", join(path, key)
                )
        except InboundError as exc:
            rejected.append(
                ItemError(
                    index=i, order_id=order_id, error=exc.code, field=exc.field, reason=exc.reason
                )
            )
            continue
        seen.add(order_id)
        purchases.append(bought)
    if not purchases:
        first = rejected[0]
        raise InboundError(
            422,
            first.error,
            f"no purchase in the batch is valid; first: {first.reason}",
            first.field,
        )
    return parsed("batch_purchase", purchases=tuple(purchases), rejected=tuple(rejected))
