"""What every public event is: the fields each carries, and what it means beyond its JSON.

An event class says, next to its fields, what it does to the Postgres read model (`delta_sign`,
`describe`, `lot_moves`, `creates_lot`), how a Telegram message tells it (`telegram`, a Russian
`str.format` template over schemas.telegram_text's fields) and its name on the dashboard
(`labels`). So an action's events are described once, in the action's module
(schemas.actions), and the sinks and the dashboard read them from there.

The two events any action may emit live here: `BonusExpired` (every command first expires the
lots whose time has come) and `LevelChanged`. The contract itself is described in
schemas.events, which lists every type.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import CustomerRef, customer_key

MONEY = r"^\d+(\.\d+)?$"


class Event(BaseModel):
    """Fields every event carries: who, when, and the customer's ledger state after it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # the points the read model's ledger line moves: +1 adds `points`, -1 takes them, 0 neither
    delta_sign: ClassVar[int] = 0
    # whether the event's `points` are a new lot (or join one: `lot_id`) in the read model
    creates_lot: ClassVar[bool] = False
    # the default Telegram text (None: the generic line)
    telegram: ClassVar[str | None] = None
    # the dashboard's name for it, per language
    labels: ClassVar[dict[str, str]] = {}

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
    lifetime_spend: str = Field(pattern=MONEY, description="Purchases minus refunds, decimal")
    level: str | None = Field(None, description="The customer's level after this event")

    def to_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)  # model_dump_json's bytes

    @property
    def key(self) -> bytes:
        return customer_key(self.tenant_id, self.customer.id)

    def describe(self) -> str:
        """The read model's ledger line, in words, for the read API and support staff."""
        return self.type

    def lot_moves(self) -> list[tuple[str, int]]:
        """How the event moves what is left of existing lots: (lot_id, +/- points). An event
        with `lots` (the lots its points came from or went back to) moves each by its
        `delta_sign`; one that moves a lot otherwise says so itself."""
        lots: list[LotPoints] | None = self.__dict__.get("lots")
        return [(lot.lot_id, self.delta_sign * lot.points) for lot in lots] if lots else []


class LotPoints(BaseModel):
    """Points taken from (or put back into) one lot; a lot is named by its award's event_id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lot_id: str
    points: int = Field(gt=0)


LOT_ID = Field(
    None,
    description=(
        "The lot holding these points: this event's event_id, or the lot of an earlier award"
        " with the same available_at and expires_at, which these points joined (absent in"
        " events written before lots merged: then the event_id)."
    ),
)


class LevelChanged(Event):
    telegram: ClassVar[str | None] = (
        "Клиент {customer} перешёл на уровень «{level}» (был «{previous_level}»)"
    )
    labels: ClassVar[dict[str, str]] = {"en": "Level change", "ru": "Смена уровня"}

    type: Literal["level_changed"] = "level_changed"
    version: Literal[1] = 1
    previous_level: str | None
    direction: Literal["up", "down"]
    order_id: str | None = Field(None, description="The purchase or refund that moved it")

    def describe(self) -> str:
        return f"level {self.previous_level or '-'} -> {self.level or '-'}"


class BonusExpired(Event):
    delta_sign: ClassVar[int] = -1
    telegram: ClassVar[str | None] = "Сгорело {bonuses}. Баланс: {balance}"
    labels: ClassVar[dict[str, str]] = {"en": "Expiry", "ru": "Сгорание"}

    type: Literal["bonus_expired"] = "bonus_expired"
    version: Literal[1] = 1
    lot_id: str
    points: int = Field(gt=0)
    expired_at: datetime

    def describe(self) -> str:
        return f"expired at {self.expired_at.isoformat()}"

    def lot_moves(self) -> list[tuple[str, int]]:
        return [(self.lot_id, -self.points)]
