"""Pydantic models of the HTTP API's bodies, as the OpenAPI document describes them.

Responses are built with these shapes by the handlers; schemathesis checks every live response
against the document generated from them, so a handler that drifts from its model fails CI.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from schemas.tenant_rules import Level, TenantRules


class ErrorBody(BaseModel):
    """Every error: a machine code, the field at fault (or null) and a reason for a human."""

    error: str = Field(examples=["invalid_field"])
    field: str | None = Field(examples=["payload.amount"])
    reason: str = Field(examples=["amount must be a number"])


# ----------------------------------------------------------------------------------- webhooks


class PurchasePayload(BaseModel):
    """A purchase; the customer is named by `email` and/or `phone` (at least one)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"anyOf": [{"required": ["email"]}, {"required": ["phone"]}]},
    )

    email: str = Field(
        None, max_length=254, json_schema_extra={"format": "email"}, examples=["anna@example.com"]
    )
    phone: str = Field(
        None,
        description="any common notation; read in the shop's region (RU by default)",
        pattern=r"^\+7 ?9[0-9]{2} ?[0-9]{3}-?[0-9]{2}-?[0-9]{2}$",
        examples=["+7 999 123-45-67"],
    )
    amount: (
        Annotated[float, Field(ge=0, lt=1e9, multiple_of=0.01)]
        | Annotated[str, Field(pattern=r"^[0-9]{1,12}(\.[0-9]{1,12})?$")]
    ) = Field(description="a number or a numeric string; exact decimal", examples=[5000])
    orderId: str | int = Field(
        description="the shop's order id: one award per order",
        json_schema_extra={"minLength": 1, "maxLength": 128, "pattern": r"\S"},
        examples=["ORDER-1"],
    )
    description: str | None = Field(None, max_length=1024)


_IDENTITY = {"anyOf": [{"required": ["email"]}, {"required": ["phone"]}]}
_EMAIL = {"format": "email"}
_ORDER = {"minLength": 1, "maxLength": 128, "pattern": r"\S"}
Money = (
    Annotated[float, Field(ge=0, lt=1e9, multiple_of=0.01)]
    | Annotated[str, Field(pattern=r"^[0-9]{1,12}(\.[0-9]{1,12})?$")]
)


class BatchPayload(BaseModel):
    purchases: list[PurchasePayload] = Field(min_length=1, max_length=50_000)


class RegisterPayload(BaseModel):
    """A customer by email and/or phone; the referrer (optional) by one of the three fields."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_IDENTITY)

    email: str = Field(None, max_length=254, json_schema_extra=_EMAIL)
    phone: str = Field(None, description="any common notation")
    name: str | None = Field(None, max_length=1024)
    referralCode: str = Field(None, max_length=128, description="the referrer's code")
    referrerEmail: str = Field(None, max_length=254, json_schema_extra=_EMAIL)
    referrerPhone: str = Field(None)


class SpendPayload(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=_IDENTITY)

    email: str = Field(None, max_length=254, json_schema_extra=_EMAIL)
    phone: str = Field(None, description="any common notation")
    points: int | Annotated[str, Field(pattern=r"^[0-9]{1,12}$")] = Field(
        description="whole points, at least 1"
    )
    orderId: str | int = Field(json_schema_extra=_ORDER)
    orderAmount: Money = Field(None, description="needed when the shop caps spends below 100 %")


class RefundPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    orderId: str | int = Field(json_schema_extra=_ORDER)
    amount: Money = Field(None, description="omit for a full refund of what is left")
    refundId: str | int = Field(None, description="tells apart partial refunds of one order")


class StandardWebhook(BaseModel):
    """Kopilka's standard JSON: an action and its payload (here: a purchase)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
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
        },
    )

    action: Literal["purchase"]
    payload: PurchasePayload


class BatchWebhook(BaseModel):
    """Up to 50,000 purchases (4 MiB); each is its own purchase, refused or accepted alone."""

    action: Literal["batch_purchase"]
    payload: BatchPayload


class RegisterWebhook(BaseModel):
    action: Literal["register_user"]
    payload: RegisterPayload


class SpendWebhook(BaseModel):
    action: Literal["spend_bonuses"]
    payload: SpendPayload


class RefundWebhook(BaseModel):
    action: Literal["refund"]
    payload: RefundPayload


class TildaJson(BaseModel):
    """What Tilda posts as JSON (an object, or an array of them): fields in any case, `payment`
    as an object or a JSON string. See the README for every variant Kopilka reads."""

    model_config = ConfigDict(extra="allow")


class TildaJsonArray(RootModel[list[TildaJson]]):
    """Tilda's JSON array form: one object per order."""


class TildaForm(BaseModel):
    """Tilda's default form encoding: flat fields and bracket keys (`payment[orderid]=…`);
    `test=test` is Tilda's connection check."""

    model_config = ConfigDict(extra="allow")


class BatchItem(BaseModel):
    index: int
    order_id: str


class BatchItemRefused(BaseModel):
    index: int
    order_id: str | None
    error: str
    field: str | None
    reason: str


class WebhookAccepted(BaseModel):
    status: Literal["accepted"]
    event_id: str = Field(description="the request's id; events carry it as request_id")
    action: str
    orders: list[str] = Field(None, description="the orders named (not for a batch)")
    accepted: list[BatchItem] = Field(None, description="batch only")
    rejected: list[BatchItemRefused] = Field(None, description="batch only")


class Outcome(BaseModel):
    index: int = Field(description="the item (batch position; 0 otherwise)")
    status: Literal["applied", "duplicate", "rejected"]
    reason: str | None
    events: list[dict] = Field(description="the loyalty.events it made (see the README)")


class WebhookProcessed(BaseModel):
    """With `Prefer: wait=N`: processed within N seconds; the accepted body plus outcomes."""

    status: Literal["processed"]
    event_id: str
    action: str
    orders: list[str] = Field(None)
    accepted: list[BatchItem] = Field(None)
    rejected: list[BatchItemRefused] = Field(None)
    outcomes: list[Outcome]


class WebhookDuplicate(BaseModel):
    """A signed `webhook-id` delivered before: nothing new was stored."""

    status: Literal["duplicate"]
    event_id: str = Field(description="the event id of the first delivery")


class TildaCheckOk(BaseModel):
    status: Literal["ok"]


# ----------------------------------------------------------------------------------- read API


class CustomerSummary(BaseModel):
    id: str
    email: str | None
    phone: str | None
    name: str | None
    created_at: str
    referral_code: str | None
    referrer_id: str | None


class Balance(BaseModel):
    total: int = Field(description="active + pending")
    active: int = Field(description="spendable now")
    pending: int = Field(description="awarded, spendable after the shop's hold")
    expiring_30d: int
    next_expiry: str | None


class NextLevel(BaseModel):
    name: str
    min_lifetime_spend: str
    spend_to_reach: str


class LevelView(BaseModel):
    name: str | None
    percent: str = Field(description="base % + level %, what a purchase earns now")
    lifetime_spend: str = Field(description="exact decimal, as a string")
    next: NextLevel | None


class LedgerEntry(BaseModel):
    event_id: str
    type: str
    order_id: str | None
    amount: str | None = Field(description="exact decimal, as a string")
    delta: int = Field(description="points added (+) or taken (-)")
    balance_after: int
    reason: str | None
    expires_at: str | None
    occurred_at: str


class CustomerView(BaseModel):
    customer: CustomerSummary
    balance: Balance
    level: LevelView
    ledger: list[LedgerEntry]


# ------------------------------------------------------------------------------------- admin


class TenantCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    rules: TenantRules | None = None


class RulesPatch(BaseModel):
    """Any subset of the rules; the result is validated as a whole."""

    model_config = ConfigDict(extra="forbid")

    base_percent: Decimal | None = None
    levels: list[Level] | None = None
    referral_percent: Decimal | None = None
    referral_mode: Literal["first_purchase", "every_purchase"] | None = None
    bonus_ttl_days: int | None = None
    hold_days: int | None = None
    max_spend_percent: Decimal | None = None
    rounding: Literal["floor", "half_up"] | None = None
    phone_region: str | None = None
    timezone: str | None = None


class TenantView(BaseModel):
    tenant_id: str
    name: str
    active: bool
    rules_revision: int
    rules: TenantRules
    edge: dict


class TenantCreated(TenantView):
    webhook_secret: str
    webhook_url: str
    api_key: str
    signing_secret: str
    signature_mode: str
    note: str


class SweepRequest(BaseModel):
    as_of: str | None = Field(None, description="ISO 8601 with zone; not in the future")


class SweepStarted(BaseModel):
    as_of: str
    customers: int


# ------------------------------------------------------------------------------------ service


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
