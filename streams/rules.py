"""The pure core of the ledger: state in, events out. No I/O, no clock, no randomness.

A customer's ledger is a list of lots (one per award, each with its own expiry) plus the orders
already seen. Applying the same command twice changes nothing; applying a replay of the same
*input* (same source event) re-emits the very same events, so a crash between "state saved" and
"event sent" can never lose an event, while a shop's retry (a new source event) emits nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from pydantic import BaseModel, ConfigDict, Field

from kopilka.ids import derived_id
from schemas.events import BonusAwarded, Event
from schemas.messages import PurchaseCommand

_ROUNDING = {"floor": ROUND_FLOOR, "half_up": ROUND_HALF_UP}
_HUNDRED = Decimal(100)


def award_points(amount: Decimal, percent: Decimal, rounding: str = "floor") -> int:
    """round(amount × percent / 100) to whole points with the tenant's rounding mode."""
    if amount < 0 or percent < 0:
        raise ValueError("amount and percent must not be negative")
    return int((amount * percent / _HUNDRED).to_integral_value(rounding=_ROUNDING[rounding]))


def _decimal_str(value: Decimal) -> str:
    """A plain decimal string (never exponent notation) for the public contract."""
    return format(value, "f")


class Lot(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str
    points: int
    remaining: int
    expires_at: datetime


class OrderRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    command_id: str
    events: tuple[str, ...]  # the events emitted for it, as JSON, to re-emit on a replay


class CustomerLedger(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int = 0
    lifetime_spend: Decimal = Decimal(0)
    lots: tuple[Lot, ...] = ()
    orders: dict[str, OrderRecord] = Field(default_factory=dict)

    def balance(self, at: datetime) -> int:
        return sum(lot.remaining for lot in self.lots if lot.expires_at > at)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> CustomerLedger:
        return cls() if data is None else cls.model_validate_json(data)


def apply_purchase(
    ledger: CustomerLedger, cmd: PurchaseCommand
) -> tuple[CustomerLedger, list[Event | str]]:
    """Award a purchase once per (tenant, order). Returns the new state and the events to emit:
    models for new events, JSON strings for events re-emitted on a replay of the same input."""
    seen = ledger.orders.get(cmd.order_id)
    if seen is not None:
        replay = list(seen.events) if seen.command_id == cmd.command_id else []
        return ledger, replay

    rules = cmd.rules
    points = award_points(cmd.amount, rules.base_percent, rules.rounding)
    event_id = derived_id(cmd.tenant_id, cmd.order_id, "bonus_awarded")
    expires_at = cmd.occurred_at + timedelta(days=rules.bonus_ttl_days)
    lots = ledger.lots
    if points:
        lots = (
            *lots,
            Lot(event_id=event_id, points=points, remaining=points, expires_at=expires_at),
        )
    lifetime = ledger.lifetime_spend + cmd.amount
    seq = ledger.seq + 1
    event = BonusAwarded(
        event_id=event_id,
        tenant_id=cmd.tenant_id,
        customer=cmd.customer,
        occurred_at=cmd.occurred_at,
        seq=seq,
        order_id=cmd.order_id,
        amount=_decimal_str(cmd.amount),
        points=points,
        balance_after=sum(lot.remaining for lot in lots if lot.expires_at > cmd.occurred_at),
        lifetime_spend=_decimal_str(lifetime),
        expires_at=expires_at,
    )
    orders = {
        **ledger.orders,
        cmd.order_id: OrderRecord(command_id=cmd.command_id, events=(event.model_dump_json(),)),
    }
    return CustomerLedger(seq=seq, lifetime_spend=lifetime, lots=lots, orders=orders), [event]
