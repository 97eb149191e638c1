"""The `refund` action. A refund is once per refund id; it reverses the order's award and
returns the points spent on it, in proportion to the money refunded (all of them once the order
is fully refunded).

Refused when the order is unknown to this customer, past its refund window (settled), already
fully refunded, or when the amount exceeds what is left of it. A refunded purchase no longer
counts towards the customer's lifetime spend, so it may cost them their level.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from msgspec.structs import replace
from pydantic import Field, PlainValidator

from kopilka.core.ids import derived_id
from schemas.actions.base import Action
from schemas.errors import Refused
from schemas.event_model import MONEY, Event, LotPoints
from schemas.inbound.envelope import Envelope
from schemas.inbound.fields import Money, OrderId, invalid
from schemas.inbound.fields import money as read_money
from schemas.inbound.model import InboundModel
from schemas.inbound.parsed import ParsedWebhook, parsed
from schemas.inbound.payloads import ORDER_MISSING
from schemas.inbound.request import ActionRequest, Directory, Origin
from schemas.messages import RuledCommand
from schemas.rules.arithmetic import money, share
from schemas.rules.builder import Builder, Result, duplicate
from schemas.rules.state import CustomerState, Lot, OrderState, lot_order

# What the shop sends


def refund_amount(value: Any) -> Decimal:
    amount = read_money(value)
    if amount.is_zero():
        raise invalid("a refund must be more than 0 (omit it for a full refund)")
    return amount


class RefundPayload(InboundModel):
    missing: ClassVar[dict[str, tuple[str, str]]] = {"orderId": ORDER_MISSING}

    orderId: OrderId
    amount: Annotated[Money, PlainValidator(refund_amount)] | None = Field(
        None, description="omit for a full refund of what is left"
    )
    refundId: OrderId | None = Field(None, description="tells apart partial refunds of one order")

    def refund(self) -> Refund:
        return Refund(order_id=self.orderId, refund_id=self.refundId, amount=self.amount)


class Refund(ActionRequest):
    order_id: str
    refund_id: str | None = None
    amount: Decimal | None = None

    def owner_order(self) -> str | None:
        return self.order_id

    async def command(self, directory: Directory, origin: Origin) -> RefundCommand:
        owner = await directory.order_owner(self.order_id)
        if owner is None:
            raise Refused(
                "unknown_order",
                f"no purchase or spend has orderId {self.order_id!r}",
                waiting_for=self.order_id,
            )
        return RefundCommand(
            customer=owner,
            order_id=self.order_id,
            refund_id=self.refund_id or refund_key(self.amount),
            amount=self.amount,
            **origin.fields(),
        )


def refund_key(amount: Decimal | None) -> str:
    """A refund without refundId is one per amount: `500` and `500.00` are the same refund."""
    if amount is None:
        return "full"
    return f"amount:{format(amount.normalize(), 'f')}"


class RefundWebhook(Envelope):
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": RefundPayload}

    action: Literal["refund"]
    payload: RefundPayload

    def parsed(self, obj: Any, plain: bool) -> ParsedWebhook:
        return parsed("refund", request=self.payload.refund())


# The command and its events


class RefundCommand(RuledCommand):
    type: Literal["refund"] = "refund"
    order_id: str
    refund_id: str
    amount: Decimal | None = Field(None, description="None: refund whatever is left")


class BonusReversed(Event):
    """A refund takes back its share of the order's award (see README: refund policy)."""

    delta_sign: ClassVar[int] = -1
    telegram: ClassVar[str | None] = (
        "Списано {bonuses} из-за возврата заказа {order_id}. Баланс: {balance}"
    )
    labels: ClassVar[dict[str, str]] = {"en": "Award reversed", "ru": "Отмена начисления"}

    type: Literal["bonus_reversed"] = "bonus_reversed"
    version: Literal[1] = 1
    order_id: str
    refund_id: str
    refund_amount: str = Field(pattern=MONEY)
    points: int = Field(ge=0, description="Points taken back")
    unrecovered: int = Field(ge=0, description="Points owed but not taken: balance too low")
    lots: list[LotPoints]

    def describe(self) -> str:
        extra = f", {self.unrecovered} not recovered" if self.unrecovered else ""
        return f"refund {self.refund_id} of order {self.order_id} ({self.refund_amount}){extra}"


class BonusReturned(Event):
    """A refund gives back its share of the points spent on the order, into their lots."""

    delta_sign: ClassVar[int] = 1
    telegram: ClassVar[str | None] = (
        "Возвращено {bonuses}, потраченных на заказ {order_id}. Баланс: {balance}"
    )
    labels: ClassVar[dict[str, str]] = {"en": "Spent points returned", "ru": "Возврат списанных"}

    type: Literal["bonus_returned"] = "bonus_returned"
    version: Literal[1] = 1
    order_id: str
    refund_id: str
    points: int = Field(gt=0)
    lots: list[LotPoints]

    def describe(self) -> str:
        return f"refund {self.refund_id} of order {self.order_id}: spent points returned"


# The rules


def order_key(cmd: RefundCommand) -> str:
    return cmd.order_id


def handle(state: CustomerState, order: OrderState, cmd: RefundCommand) -> Result:
    if cmd.refund_id in order.refunds:
        return duplicate(state, order, f"refund {cmd.refund_id} was already applied")
    b = Builder(state, cmd)
    b.expire_due()
    base = order.amount if order.amount is not None else order.spend_order_amount
    if order.purchase_command is None and order.spend_command is None:
        return _reject(b, state, order, f"order {cmd.order_id} is not known for them")
    if order.settled:
        return _reject(b, state, order, f"the refund window of order {cmd.order_id} ended")
    spent_points = sum(t.points for t in order.spent)
    refundable = (base - order.refunded) if base is not None else None
    if refundable is not None and refundable <= 0:
        return _reject(b, state, order, f"order {cmd.order_id} is already fully refunded")
    amount = cmd.amount if cmd.amount is not None else refundable
    if amount is not None and refundable is not None and amount > refundable:
        return _reject(
            b, state, order, f"refund {money(amount)} exceeds what is left: {money(refundable)}"
        )
    refunded = order.refunded + (amount or 0)
    full = base is None or refunded >= base
    if base is None or full:
        reverse, give_back = order.awarded - order.reversed, spent_points - order.returned
    else:
        reverse = share(order.awarded, refunded, base) - order.reversed
        give_back = share(spent_points, refunded, base) - order.returned

    # Reverse the award: from the order's own lot first, then from the lots expiring soonest;
    # what the balance cannot cover is forgiven and reported as `unrecovered`.
    own = [lot for lot in b.lots if lot.lot_id == order.award_lot]
    others = sorted((lot for lot in b.lots if lot.lot_id != order.award_lot), key=lot_order)
    taken = b.take(reverse, own + others) if reverse > 0 else []
    recovered = sum(t.points for t in taken)
    if order.amount is not None:  # a refunded purchase no longer counts towards the level
        b.lifetime = max(Decimal(0), b.lifetime - (amount or 0))
    refund_amount = money(amount if amount is not None else Decimal(0))
    if reverse > 0 or order.purchase_command is not None:
        b.emit(
            BonusReversed,
            derived_id(cmd.tenant_id, cmd.order_id, cmd.refund_id, "bonus_reversed"),
            order_id=cmd.order_id,
            refund_id=cmd.refund_id,
            refund_amount=refund_amount,
            points=recovered,
            unrecovered=max(reverse, 0) - recovered,
            lots=[LotPoints(lot_id=t.lot_id, points=t.points) for t in taken],
        )
    # Give back spent points into the lots they came from, keeping those lots' times; a lot
    # that has expired since takes them back and expires again at once (`bonus_expired`).
    returned: list[LotPoints] = []
    left = give_back
    for t in sorted(order.spent, key=lot_order, reverse=True):
        if left <= 0:
            break
        n = min(left, t.points)
        left -= n
        returned.append(LotPoints(lot_id=t.lot_id, points=n))
        lots = {lot.lot_id: i for i, lot in enumerate(b.lots)}
        if t.lot_id in lots:
            lot = b.lots[lots[t.lot_id]]
            b.lots[lots[t.lot_id]] = replace(lot, remaining=lot.remaining + n)
        else:
            b.lots.append(
                Lot(
                    lot_id=t.lot_id,
                    remaining=n,
                    available_at=t.available_at,
                    expires_at=t.expires_at,
                )
            )
    if returned:
        b.emit(
            BonusReturned,
            derived_id(cmd.tenant_id, cmd.order_id, cmd.refund_id, "bonus_returned"),
            order_id=cmd.order_id,
            refund_id=cmd.refund_id,
            points=sum(r.points for r in returned),
            lots=returned,
        )
        b.expire_due()
    b.relevel(cmd.rules, cmd.order_id)
    new_order = replace(
        order,
        refunds={**order.refunds, cmd.refund_id: cmd.command_id},
        refunded=refunded,
        reversed=order.reversed + max(reverse, 0),
        returned=order.returned + (give_back - left),
    )
    return Result(b.state(state), new_order, b.events, "applied")


def _reject(b: Builder, state: CustomerState, order: OrderState, why: str) -> Result:
    return Result(b.state(state), order, b.events, "rejected", reason=why)


ACTION = Action(
    webhook=RefundWebhook,
    command=RefundCommand,
    order_key=order_key,
    handle=handle,
    events=(BonusReversed, BonusReturned),
)
