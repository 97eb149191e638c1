"""Pydantic models of the HTTP API's bodies, as the OpenAPI document describes them.

Responses are built with these shapes by the handlers; schemathesis checks every live response
against the document generated from them, so a handler that drifts from its model fails CI.
The webhook's request bodies are not here: they are the models in `schemas.inbound` that
validate them, so the document shows exactly what the parser accepts.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.tenant_rules import Level, TenantRules


class ErrorBody(BaseModel):
    """Every error: a machine code, the field at fault (or null) and a reason for a human."""

    error: str = Field(examples=["invalid_field"])
    field: str | None = Field(examples=["payload.amount"])
    reason: str = Field(examples=["amount must be a number"])


# ----------------------------------------------------------------------------------- webhooks
# The request bodies of POST /api/webhook/{secret} are the models that validate them:
# each action's module (schemas.actions) and schemas.inbound.tilda (TildaOrder, TildaOrders).


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


class OutcomeBody(BaseModel):
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
    outcomes: list[OutcomeBody]


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
