"""The payloads of Kopilka's standard JSON, one model per action.

Field names are read in any case (`model.InboundModel`); the customer is named by ``email``
and/or ``phone``. A batch's purchases are validated one by one: a bad one does not refuse the
batch, it is listed with its reason (`standard.parse_standard`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, ClassVar, cast

from pydantic import (
    BeforeValidator,
    ConfigDict,
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
from schemas.inbound.model import InboundModel
from schemas.inbound.parsed import (
    Purchase,
    ReferrerKind,
    Refund,
    Registration,
    Spend,
    purchase,
)
from schemas.text_checks import identifier

_NO_IDENTITY = Refusal("missing_field", "an email or a phone is required", "email")
_ORDER_MISSING = ("missing_field", "order id is required")


class Identified(InboundModel):
    """A payload naming the customer by email and/or phone (at least one)."""

    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["email"]}, {"required": ["phone"]}]}
    )
    hidden: ClassVar[frozenset[str]] = frozenset({"identity"})

    email: Email | None = Field(None, examples=["anna@example.com"])
    phone: Phone | None = Field(None, examples=["+7 999 123-45-67"])
    identity: Check = None

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        values = cls.values(data)
        if "email" not in values and "phone" not in values:
            values["identity"] = _NO_IDENTITY
        return values


class PurchasePayload(Identified):
    """A purchase; the customer is named by `email` and/or `phone` (at least one)."""

    missing: ClassVar[dict[str, tuple[str, str]]] = {
        "orderId": _ORDER_MISSING,
        "amount": ("missing_field", "amount is required"),
    }

    orderId: OrderId = Field(
        description="the shop's order id: one award per order", examples=["ORDER-1"]
    )
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
    referralCode: (
        Annotated[
            str,
            PlainValidator(referral_code),
            WithJsonSchema({"type": "string", "maxLength": MAX_ORDER_ID}),
        ]
        | None
    ) = Field(None, description="the referrer's code (also read as referrerCode)")
    referrerEmail: Email | None = None
    referrerPhone: Phone | None = None
    name: Text | None = None

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        values = super().prepare(data)
        named = [field for field, _ in _REFERRERS if field in values]
        if len(named) > 1:
            hits = cls.hits(data)
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
