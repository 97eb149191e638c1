"""Pydantic models of the HTTP API's bodies, as the OpenAPI document describes them.

Responses are built with these shapes by the handlers; schemathesis checks every live response
against the document generated from them, so a handler that drifts from its model fails CI.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


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


class StandardWebhook(BaseModel):
    """Kopilka's standard JSON: an action and its payload."""

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


class WebhookAccepted(BaseModel):
    status: Literal["accepted"]
    event_id: str
    orders: list[str]


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


class LedgerEntry(BaseModel):
    event_id: str
    type: str
    order_id: str | None
    amount: str | None = Field(description="exact decimal, as a string")
    points: int
    balance_after: int
    expires_at: str | None
    occurred_at: str


class CustomerView(BaseModel):
    customer: CustomerSummary
    balance: int
    lifetime_spend: str = Field(description="exact decimal, as a string")
    ledger: list[LedgerEntry]


# ------------------------------------------------------------------------------------ service


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
