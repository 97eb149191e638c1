"""The `spend_bonuses` action: a spend, once per order, from the active lots that expire first,
never below zero.

Refused (`spend_rejected`, with the reason and what would have been allowed) when the tenant caps
points at a share of the order and the order's amount is missing or too small, or when the
customer's active balance (lots past their hold, before their TTL) cannot cover it. A refused
spend does not take the order's one spend: the shop may try again with fewer points.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

from msgspec.structs import replace
from pydantic import Field

from kopilka.core.ids import derived_id
from schemas.actions.base import Action
from schemas.event_model import MONEY, Event, LotPoints
from schemas.inbound.envelope import Envelope
from schemas.inbound.fields import Money, OrderId, Points
from schemas.inbound.model import InboundModel
from schemas.inbound.parsed import ParsedWebhook, parsed
from schemas.inbound.payloads import ORDER_MISSING, Identified
from schemas.inbound.request import ActionRequest, Directory, Origin
from schemas.messages import RuledCommand
from schemas.rules.arithmetic import HUNDRED, award_points, money
from schemas.rules.builder import Builder, Result, duplicate
from schemas.rules.state import CustomerState, OrderState, lot_order

# What the shop sends


class SpendPayload(Identified):
    missing: ClassVar[dict[str, tuple[str, str]]] = {
        "orderId": ORDER_MISSING,
        "points": ("missing_field", "points to spend are required"),
    }

    orderId: OrderId
    points: Points
    orderAmount: Money | None = Field(
        None, description="needed when the shop caps spends below 100 %"
    )

    def spend(self) -> Spend:
        return Spend(
            email=self.email,
            phone=self.phone,
            order_id=self.orderId,
            points=self.points,
            order_amount=self.orderAmount,
        )


class Spend(ActionRequest):
    email: str | None = None
    phone: str | None = None
    order_id: str
    points: int = Field(gt=0)
    order_amount: Decimal | None = None

    def names(self) -> tuple[str | None, str | None]:
        return self.email, self.phone

    def claimed_order(self) -> str | None:
        return self.order_id

    async def command(self, directory: Directory, origin: Origin) -> SpendCommand:
        customer = await directory.customer(self.email, self.phone)
        await directory.claim(self.order_id, customer)
        return SpendCommand(
            customer=customer,
            order_id=self.order_id,
            points=self.points,
            order_amount=self.order_amount,
            **origin.fields(),
        )


class SpendWebhook(Envelope):
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": SpendPayload}

    action: Literal["spend_bonuses"]
    payload: SpendPayload

    def parsed(self, obj: object, plain: bool) -> ParsedWebhook:
        return parsed("spend_bonuses", request=self.payload.spend())


# The command and its events


class SpendCommand(RuledCommand):
    type: Literal["spend"] = "spend"
    order_id: str
    points: int = Field(gt=0)
    order_amount: Decimal | None = None


class BonusSpent(Event):
    delta_sign: ClassVar[int] = -1
    telegram: ClassVar[str | None] = (
        "Списано {bonuses} в оплату заказа {order_id}. Баланс: {balance}"
    )
    labels: ClassVar[dict[str, str]] = {"en": "Spend", "ru": "Списание"}

    type: Literal["bonus_spent"] = "bonus_spent"
    version: Literal[1] = 1
    order_id: str
    points: int = Field(gt=0)
    order_amount: str | None = Field(None, pattern=MONEY)
    lots: list[LotPoints] = Field(description="Lots the points came from, soonest-expiring first")

    def describe(self) -> str:
        return f"spent on order {self.order_id}"


class SpendRejected(Event):
    telegram: ClassVar[str | None] = "Не удалось списать {bonuses} за заказ {order_id}: {reason}"
    labels: ClassVar[dict[str, str]] = {"en": "Spend refused", "ru": "Списание отклонено"}

    type: Literal["spend_rejected"] = "spend_rejected"
    version: Literal[1] = 1
    order_id: str
    points: int
    reason: Literal["insufficient_balance", "over_max_percent", "order_amount_required"]
    detail: str = Field(description="The reason in words, for the shop's developer")
    active_balance: int = Field(ge=0, description="Points spendable now")
    max_points: int | None = Field(None, description="Most points this order may take")

    def describe(self) -> str:
        return f"spend on order {self.order_id} refused: {self.detail}"


# The rules


def order_key(cmd: SpendCommand) -> str:
    return cmd.order_id


def handle(state: CustomerState, order: OrderState, cmd: SpendCommand) -> Result:
    if order.spend_command is not None:
        return duplicate(state, order, f"points were already spent on order {cmd.order_id}")
    rules = cmd.rules
    b = Builder(state, cmd)
    at = b.at
    b.expire_due()
    active = [lot for lot in b.lots if lot.active(at)]
    active_balance = sum(lot.remaining for lot in active)
    max_points = None
    reason = detail = None
    if rules.max_spend_percent < 100:
        if cmd.order_amount is None:
            reason = "order_amount_required"
            detail = (
                f"this shop lets points pay at most {money(rules.max_spend_percent)}% "
                "of an order: send orderAmount"
            )
        else:
            max_points = award_points(cmd.order_amount, rules.max_spend_percent, "floor")
    elif cmd.order_amount is not None:
        max_points = award_points(cmd.order_amount, HUNDRED, "floor")
    if reason is None and max_points is not None and cmd.points > max_points:
        assert cmd.order_amount is not None  # max_points came from it
        reason = "over_max_percent"
        detail = (
            f"{cmd.points} points exceed the {max_points} this order allows "
            f"({money(rules.max_spend_percent)}% of {money(cmd.order_amount)})"
        )
    if reason is None and cmd.points > active_balance:
        reason = "insufficient_balance"
        pending = sum(lot.remaining for lot in b.lots) - active_balance
        detail = f"{cmd.points} points asked, {active_balance} active" + (
            f" ({pending} more pending)" if pending else ""
        )
    if reason is not None:
        b.emit(
            SpendRejected,
            derived_id(cmd.command_id, "spend_rejected"),
            order_id=cmd.order_id,
            points=cmd.points,
            reason=reason,
            detail=detail,
            active_balance=active_balance,
            max_points=max_points,
        )
        return Result(b.state(state), order, b.events, "rejected", reason=reason)
    taken = b.take(cmd.points, sorted(active, key=lot_order))
    b.emit(
        BonusSpent,
        derived_id(cmd.tenant_id, cmd.order_id, "bonus_spent"),
        order_id=cmd.order_id,
        points=cmd.points,
        order_amount=money(cmd.order_amount) if cmd.order_amount is not None else None,
        lots=[LotPoints(lot_id=t.lot_id, points=t.points) for t in taken],
    )
    new_order = replace(
        order,
        spend_command=cmd.command_id,
        spend_order_amount=cmd.order_amount,
        spent=tuple(taken),
    )
    return Result(b.state(state), new_order, b.events, "applied")


ACTION = Action(
    webhook=SpendWebhook,
    command=SpendCommand,
    order_key=order_key,
    handle=handle,
    events=(BonusSpent, SpendRejected),
)
