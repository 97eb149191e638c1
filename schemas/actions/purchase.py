"""The `purchase` action (many in one body: schemas.actions.purchase_batch). A purchase earns
one award per order: `base_percent` plus the level's bonus of the amount.

The award is a lot, spendable after the tenant's hold and gone after its TTL; the amount counts
towards the customer's lifetime spend, and so towards their level (`level_changed`). A customer
who came by referral earns their referrer an award too: a `ReferralCommand` on the referrer's key
(schemas.actions.referral), on the first purchase or on every one, as the tenant's rules say.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from msgspec.structs import replace
from pydantic import ConfigDict, Field

from kopilka.core.ids import derived_id
from schemas.actions.base import Action
from schemas.actions.referral import ReferralCommand
from schemas.event_model import LOT_ID, MONEY, Event
from schemas.inbound.envelope import Envelope
from schemas.inbound.fields import Money, OrderId, Text
from schemas.inbound.model import InboundModel
from schemas.inbound.parsed import ParsedWebhook, Purchase, parsed, purchase
from schemas.inbound.payloads import ORDER_MISSING, Identified
from schemas.messages import Command, CustomerRef, RuledCommand
from schemas.rules.arithmetic import award_points, money
from schemas.rules.builder import Builder, Result, duplicate
from schemas.rules.state import CustomerState, OrderState

# What the shop sends (Tilda's orders become the same purchases: schemas.inbound.tilda)


class PurchasePayload(Identified):
    """A purchase; the customer is named by `email` and/or `phone` (at least one)."""

    missing: ClassVar[dict[str, tuple[str, str]]] = {
        "orderId": ORDER_MISSING,
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


class StandardWebhook(Envelope):
    """Kopilka's standard JSON: an action and its payload (here: a purchase)."""

    model_config = ConfigDict(
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
        }
    )
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": PurchasePayload}

    action: Literal["purchase"]
    payload: PurchasePayload

    def parsed(self, obj: Any, plain: bool) -> ParsedWebhook:
        return parsed("purchase", purchases=(self.payload.purchase(),))


# The command (built by the worker's normaliser, streams.normalizer, many at a time) and its
# event


class PurchaseCommand(RuledCommand):
    type: Literal["purchase"] = "purchase"
    order_id: str
    amount: Decimal
    description: str | None = None


class BonusAwarded(Event):
    """Points awarded for a purchase: spendable from `available_at` (after the tenant's hold),
    gone at `expires_at`, held in lot `lot_id` (awards with the same times share one lot)."""

    delta_sign: ClassVar[int] = 1
    creates_lot: ClassVar[bool] = True
    telegram: ClassVar[str | None] = "Начислено {bonuses} за заказ {order_id}. Баланс: {balance}"
    labels: ClassVar[dict[str, str]] = {"en": "Award", "ru": "Начисление"}

    type: Literal["bonus_awarded"] = "bonus_awarded"
    version: Literal[1] = 1
    order_id: str
    amount: str = Field(description="Purchase amount, decimal string", pattern=MONEY)
    percent: str = Field(description="base % + level % applied", pattern=MONEY)
    points: int = Field(ge=0)
    lot_id: str | None = LOT_ID
    available_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        return f"purchase {self.order_id}: {self.percent}% of {self.amount}"


# The rules


def order_key(cmd: PurchaseCommand) -> str:
    return cmd.order_id


def handle(state: CustomerState, order: OrderState, cmd: PurchaseCommand) -> Result:
    if order.purchase_command is not None:
        return duplicate(state, order, f"order {cmd.order_id} was already awarded")
    rules = cmd.rules
    b = Builder(state, cmd)
    b.expire_due()
    held = rules.level_for(b.lifetime)
    percent = rules.base_percent + (held.bonus_percent if held else 0)
    points = award_points(cmd.amount, percent, rules.rounding)
    lot_id = derived_id(cmd.tenant_id, cmd.order_id, "bonus_awarded")
    lot = b.add_lot(lot_id, points, rules)
    b.lifetime += cmd.amount
    b.emit(
        BonusAwarded,
        lot_id,
        order_id=cmd.order_id,
        amount=money(cmd.amount),
        percent=money(percent),
        points=points,
        lot_id=lot.lot_id,
        available_at=lot.available_at,
        expires_at=lot.expires_at,
    )
    b.relevel(rules, cmd.order_id)
    followups: list[Command] = []
    if state.referrer_id and (rules.referral_mode == "every_purchase" or state.purchases == 0):
        followups.append(
            ReferralCommand(
                command_id=derived_id(cmd.command_id, "referral"),
                request_id=cmd.request_id,
                item=cmd.item,
                tenant_id=cmd.tenant_id,
                customer=CustomerRef(id=state.referrer_id),
                occurred_at=cmd.occurred_at,
                rules=rules,
                order_id=cmd.order_id,
                referee_id=cmd.customer.id,
                amount=cmd.amount,
            )
        )
    new_order = replace(
        order,
        purchase_command=cmd.command_id,
        amount=cmd.amount,
        award_lot=lot.lot_id if points else None,
        awarded=points,
    )
    new_state = b.state(state, purchases=state.purchases + 1)
    return Result(new_state, new_order, b.events, "applied", followups)


ACTION = Action(
    webhook=StandardWebhook,
    command=PurchaseCommand,
    order_key=order_key,
    handle=handle,
    events=(BonusAwarded,),
)
