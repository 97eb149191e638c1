"""What the ledger keeps: one `CustomerState` per customer, one `OrderState` per order it touched.

Both are frozen pydantic models, stored as their JSON in the ledger table (`to_bytes` /
`from_bytes`); a command's handler never changes one, it returns a copy (schemas.frozen_copy).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class Lot(BaseModel):
    model_config = ConfigDict(frozen=True)

    lot_id: str
    remaining: int
    available_at: datetime
    expires_at: datetime

    def active(self, at: datetime) -> bool:
        return self.available_at <= at < self.expires_at


class Remembered(BaseModel):
    model_config = ConfigDict(frozen=True)

    command_id: str
    status: str
    events: tuple[str, ...]
    followups: tuple[str, ...] = ()
    reason: str | None = None


class CustomerState(BaseModel):
    """The per-customer table entry. Only open lots are kept, so it stays small."""

    model_config = ConfigDict(frozen=True)

    seq: int = 0
    lifetime_spend: Decimal = Decimal(0)
    level: str | None = None
    purchases: int = 0
    registered: bool = False
    referral_code: str | None = None
    referrer_id: str | None = None
    lots: tuple[Lot, ...] = ()
    recent: tuple[Remembered, ...] = ()
    # The last command applied and the order entry it wrote. The customer entry is written
    # first: if a crash loses the order entry's write, the replay restores it from here.
    last_command: str | None = None
    last_order_key: str | None = None
    last_order: OrderState | None = None

    def balance(self) -> int:
        return sum(lot.remaining for lot in self.lots)

    def active_balance(self, at: datetime) -> int:
        return sum(lot.remaining for lot in self.lots if lot.active(at))

    def to_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)  # model_dump_json's bytes

    @classmethod
    def from_bytes(cls, data: bytes | None) -> CustomerState:
        return cls() if data is None else cls.model_validate_json(data)


class Taken(BaseModel):
    """Points a spend took from one lot, with the lot's times, to give them back on a refund."""

    model_config = ConfigDict(frozen=True)

    lot_id: str
    points: int
    available_at: datetime
    expires_at: datetime


class OrderState(BaseModel):
    """What one customer's ledger knows about one order (or, for the referrer, one referral)."""

    model_config = ConfigDict(frozen=True)

    purchase_command: str | None = None
    amount: Decimal | None = None
    award_lot: str | None = None
    awarded: int = 0
    spend_command: str | None = None
    spend_order_amount: Decimal | None = None
    spent: tuple[Taken, ...] = ()
    refunds: dict[str, str] = Field(default_factory=dict)  # refund_id -> command_id
    refunded: Decimal = Decimal(0)
    reversed: int = 0
    returned: int = 0
    emitted: tuple[Remembered, ...] = ()
    # Past its refund window (streams.settlement): only what idempotency needs is kept.
    settled: bool = False

    def to_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)  # model_dump_json's bytes

    @classmethod
    def from_bytes(cls, data: bytes | None) -> OrderState:
        return NO_ORDER if data is None else cls.model_validate_json(data)


CustomerState.model_rebuild()
NO_ORDER = OrderState()  # frozen: one shared empty entry for orders not seen yet


def lot_order(lot: Lot | Taken) -> tuple[datetime, datetime, str]:
    """The order lots are spent (and expired) in: the one expiring first goes first."""
    return (lot.expires_at, lot.available_at, lot.lot_id)
