"""The `register_user` action: a registration, once per customer, with their referral code and
who referred them (by code, email or phone).

The referrer kept here is who a later purchase awards (schemas.actions.purchase). The ingress
checks a named referrer at once (ingest.precheck); the worker finds it again
(`Directory.referrer`, streams.normalizer).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, WithJsonSchema

from kopilka.core.ids import derived_id
from schemas.actions.base import Action
from schemas.errors import InboundError
from schemas.event_model import Event
from schemas.inbound.envelope import Envelope
from schemas.inbound.fields import (
    MAX_ORDER_ID,
    Check,
    Email,
    Phone,
    Refusal,
    Text,
    from_inbound,
    read_text,
)
from schemas.inbound.model import InboundModel
from schemas.inbound.parsed import ParsedWebhook, parsed
from schemas.inbound.payloads import Identified
from schemas.inbound.request import ActionRequest, Directory, Origin
from schemas.messages import RuledCommand
from schemas.rules.builder import Builder, Result, duplicate
from schemas.rules.state import CustomerState, OrderState
from schemas.text_checks import identifier

# What the shop sends

ReferrerKind = Literal["code", "email", "phone"]


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


class Registration(ActionRequest):
    email: str | None = None
    phone: str | None = None
    name: str | None = None
    referrer_kind: ReferrerKind | None = None
    referrer: str | None = Field(None, description="code, email or (raw) phone of the referrer")

    def names(self) -> tuple[str | None, str | None]:
        return self.email, self.phone

    async def command(self, directory: Directory, origin: Origin) -> RegisterCommand:
        customer = await directory.customer(self.email, self.phone, self.name)
        referrer_id = None
        if self.referrer is not None and self.referrer_kind is not None:
            referrer_id = await directory.referrer(customer, self.referrer_kind, self.referrer)
        code, referrer_id = await directory.register(customer, referrer_id)
        return RegisterCommand(
            customer=customer,
            name=self.name,
            referral_code=code,
            referrer_id=referrer_id,
            **origin.fields(),
        )


class RegisterWebhook(Envelope):
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": RegisterPayload}

    action: Literal["register_user"]
    payload: RegisterPayload

    def parsed(self, obj: Any, plain: bool) -> ParsedWebhook:
        return parsed("register_user", request=self.payload.registration())


# The command and its event


class RegisterCommand(RuledCommand):
    type: Literal["register"] = "register"
    name: str | None = None
    referral_code: str
    referrer_id: str | None = None


class CustomerRegistered(Event):
    telegram: ClassVar[str | None] = "Новый участник программы лояльности: {customer}"
    labels: ClassVar[dict[str, str]] = {"en": "Registration", "ru": "Регистрация"}

    type: Literal["customer_registered"] = "customer_registered"
    version: Literal[1] = 1
    name: str | None = None
    referral_code: str = Field(description="Code others give to name this customer as referrer")
    referrer_id: str | None = None

    def describe(self) -> str:
        return "registered" + (f", referred by {self.referrer_id}" if self.referrer_id else "")


# The rules


def order_key(cmd: RegisterCommand) -> None:
    return None  # a customer's own fact: no order entry


def handle(state: CustomerState, order: OrderState, cmd: RegisterCommand) -> Result:
    if state.registered:
        return duplicate(state, None, "the customer is already registered")
    b = Builder(state, cmd)
    b.expire_due()
    b.emit(
        CustomerRegistered,
        derived_id(cmd.tenant_id, cmd.customer.id, "customer_registered"),
        name=cmd.name,
        referral_code=cmd.referral_code,
        referrer_id=cmd.referrer_id,
    )
    new_state = b.state(
        state,
        registered=True,
        referral_code=cmd.referral_code,
        referrer_id=cmd.referrer_id,
    )
    return Result(new_state, None, b.events, "applied")


ACTION = Action(
    webhook=RegisterWebhook,
    command=RegisterCommand,
    order_key=order_key,
    handle=handle,
    events=(CustomerRegistered,),
)
