"""The public event contract of `loyalty.events`.

Every event is a JSON object with `type` and `version`; money is a decimal *string* (exact),
points are integers, times are RFC 3339 in UTC. Each type has a JSON Schema file under
`schemas/json/`, generated from these models by `kopilka schemas write` and checked by a test.
Record key: `tenant_id:customer_id` (UTF-8). Consumers must de-duplicate on `event_id`:
delivery is at-least-once, and a re-processed input re-emits the same event with the same id.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import CustomerRef

SCHEMA_DIR = Path(__file__).resolve().parent / "json"


_MONEY = r"^\d+(\.\d+)?$"


class Event(BaseModel):
    """Fields every event carries: who, when, and the customer's ledger state after it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(description="Unique id; the same input always yields the same id")
    type: str
    version: int
    tenant_id: str
    customer: CustomerRef
    occurred_at: datetime = Field(description="When the shop's request was received (UTC)")
    seq: int = Field(description="Per-customer sequence number of the ledger, from 1")
    request_id: str | None = Field(
        None, description="event_id of the webhook that caused it (null for the expiry sweep)"
    )
    balance_after: int = Field(ge=0, description="Points not yet expired: active + pending")
    lifetime_spend: str = Field(pattern=_MONEY, description="Purchases minus refunds, decimal")
    level: str | None = Field(None, description="The customer's level after this event")

    def to_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)  # model_dump_json's bytes

    @property
    def key(self) -> bytes:
        return f"{self.tenant_id}:{self.customer.id}".encode()


class LotPoints(BaseModel):
    """Points taken from (or put back into) one lot; a lot is named by its award's event_id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lot_id: str
    points: int = Field(gt=0)


_LOT_ID = Field(
    None,
    description=(
        "The lot holding these points: this event's event_id, or the lot of an earlier award"
        " with the same available_at and expires_at, which these points joined (absent in"
        " events written before lots merged: then the event_id)."
    ),
)


class BonusAwarded(Event):
    """Points awarded for a purchase: spendable from `available_at` (after the tenant's hold),
    gone at `expires_at`, held in lot `lot_id` (awards with the same times share one lot)."""

    type: Literal["bonus_awarded"] = "bonus_awarded"
    version: Literal[1] = 1
    order_id: str
    amount: str = Field(description="Purchase amount, decimal string", pattern=_MONEY)
    percent: str = Field(description="base % + level % applied", pattern=_MONEY)
    points: int = Field(ge=0)
    lot_id: str | None = _LOT_ID
    available_at: datetime
    expires_at: datetime


class ReferralAwarded(Event):
    """Points for the referrer (this event's customer) when their referee bought something."""

    type: Literal["referral_awarded"] = "referral_awarded"
    version: Literal[1] = 1
    order_id: str = Field(description="The referee's order")
    referee_id: str
    amount: str = Field(pattern=_MONEY)
    percent: str = Field(pattern=_MONEY)
    points: int = Field(ge=0)
    lot_id: str | None = _LOT_ID
    available_at: datetime
    expires_at: datetime


class LevelChanged(Event):
    type: Literal["level_changed"] = "level_changed"
    version: Literal[1] = 1
    previous_level: str | None
    direction: Literal["up", "down"]
    order_id: str | None = Field(None, description="The purchase or refund that moved it")


class CustomerRegistered(Event):
    type: Literal["customer_registered"] = "customer_registered"
    version: Literal[1] = 1
    name: str | None = None
    referral_code: str = Field(description="Code others give to name this customer as referrer")
    referrer_id: str | None = None


class BonusSpent(Event):
    type: Literal["bonus_spent"] = "bonus_spent"
    version: Literal[1] = 1
    order_id: str
    points: int = Field(gt=0)
    order_amount: str | None = Field(None, pattern=_MONEY)
    lots: list[LotPoints] = Field(description="Lots the points came from, soonest-expiring first")


class SpendRejected(Event):
    type: Literal["spend_rejected"] = "spend_rejected"
    version: Literal[1] = 1
    order_id: str
    points: int
    reason: Literal["insufficient_balance", "over_max_percent", "order_amount_required"]
    detail: str = Field(description="The reason in words, for the shop's developer")
    active_balance: int = Field(ge=0, description="Points spendable now")
    max_points: int | None = Field(None, description="Most points this order may take")


class BonusExpired(Event):
    type: Literal["bonus_expired"] = "bonus_expired"
    version: Literal[1] = 1
    lot_id: str
    points: int = Field(gt=0)
    expired_at: datetime


class BonusReversed(Event):
    """A refund takes back its share of the order's award (see README: refund policy)."""

    type: Literal["bonus_reversed"] = "bonus_reversed"
    version: Literal[1] = 1
    order_id: str
    refund_id: str
    refund_amount: str = Field(pattern=_MONEY)
    points: int = Field(ge=0, description="Points taken back")
    unrecovered: int = Field(ge=0, description="Points owed but not taken: balance too low")
    lots: list[LotPoints]


class BonusReturned(Event):
    """A refund gives back its share of the points spent on the order, into their lots."""

    type: Literal["bonus_returned"] = "bonus_returned"
    version: Literal[1] = 1
    order_id: str
    refund_id: str
    points: int = Field(gt=0)
    lots: list[LotPoints]


EVENT_TYPES: dict[str, type[Event]] = {
    model.model_fields["type"].default: model
    for model in (
        BonusAwarded,
        ReferralAwarded,
        LevelChanged,
        CustomerRegistered,
        BonusSpent,
        SpendRejected,
        BonusExpired,
        BonusReversed,
        BonusReturned,
    )
}


def parse_event(data: bytes) -> Event:
    """The event in `data` (ValueError when it is none): its JSON is parsed once, then checked
    against its type's model."""
    fields = orjson.loads(data)
    kind = fields.get("type")
    model = EVENT_TYPES.get(kind)
    if model is None:
        raise ValueError(f"unknown event type {kind!r}")
    return model.model_validate(fields)


def json_schema(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = (
        f"https://kopilka.dev/schemas/{model.model_fields['type'].default}.v{model.model_fields['version'].default}.json"
    )
    return schema


def schema_path(model: type[Event]) -> Path:
    return (
        SCHEMA_DIR
        / f"{model.model_fields['type'].default}.v{model.model_fields['version'].default}.json"
    )


def write_schemas() -> list[Path]:
    written = []
    for model in EVENT_TYPES.values():
        path = schema_path(model)
        path.write_bytes(
            orjson.dumps(json_schema(model), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            + b"\n"
        )
        written.append(path)
    return written
