"""A referral award: the referrer's share (`referral_percent`) of a referee's purchase.

Made by the referee's ledger (schemas.actions.purchase) and applied on the referrer's own key. Its
order entry, keyed by referee and order, makes it one award per referred purchase; it is a lot
like any award, but does not count towards the referrer's lifetime spend.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Literal

from msgspec.structs import replace
from pydantic import Field

from kopilka.core.ids import derived_id
from schemas.actions.base import Action
from schemas.event_model import LOT_ID, MONEY, Event
from schemas.messages import RuledCommand
from schemas.rules.arithmetic import award_points, money
from schemas.rules.builder import Builder, Result, duplicate
from schemas.rules.state import CustomerState, OrderState

# The command (made by the referee's purchase) and its event


class ReferralCommand(RuledCommand):
    """Made by the referee's ledger, applied on the referrer's key."""

    type: Literal["referral"] = "referral"
    order_id: str
    referee_id: str
    amount: Decimal


class ReferralAwarded(Event):
    """Points for the referrer (this event's customer) when their referee bought something."""

    delta_sign: ClassVar[int] = 1
    creates_lot: ClassVar[bool] = True
    telegram: ClassVar[str | None] = (
        "Начислено {bonuses} за заказ {order_id} приглашённого друга. Баланс: {balance}"
    )
    labels: ClassVar[dict[str, str]] = {"en": "Referral award", "ru": "Реферальное начисление"}

    type: Literal["referral_awarded"] = "referral_awarded"
    version: Literal[1] = 1
    order_id: str = Field(description="The referee's order")
    referee_id: str
    amount: str = Field(pattern=MONEY)
    percent: str = Field(pattern=MONEY)
    points: int = Field(ge=0)
    lot_id: str | None = LOT_ID
    available_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        return f"referral: {self.percent}% of order {self.order_id} by customer {self.referee_id}"


# The rules


def order_key(cmd: ReferralCommand) -> str:
    return f"referral:{cmd.referee_id}:{cmd.order_id}"


def handle(state: CustomerState, order: OrderState, cmd: ReferralCommand) -> Result:
    if order.purchase_command is not None:
        return duplicate(state, order, "referral already awarded for this order")
    rules = cmd.rules
    b = Builder(state, cmd)
    b.expire_due()
    points = award_points(cmd.amount, rules.referral_percent, rules.rounding)
    lot_id = derived_id(cmd.tenant_id, cmd.referee_id, cmd.order_id, "referral_awarded")
    lot = b.add_lot(lot_id, points, rules)
    b.emit(
        ReferralAwarded,
        lot_id,
        order_id=cmd.order_id,
        referee_id=cmd.referee_id,
        amount=money(cmd.amount),
        percent=money(rules.referral_percent),
        points=points,
        lot_id=lot.lot_id,
        available_at=lot.available_at,
        expires_at=lot.expires_at,
    )
    new_order = replace(
        order, purchase_command=cmd.command_id, award_lot=lot.lot_id, awarded=points
    )
    return Result(b.state(state), new_order, b.events, "applied")


ACTION = Action(
    command=ReferralCommand, order_key=order_key, handle=handle, events=(ReferralAwarded,)
)
