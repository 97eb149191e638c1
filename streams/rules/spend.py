"""A spend: once per order, from the active lots that expire first, never below zero.

Refused (`spend_rejected`, with the reason and what would have been allowed) when the tenant caps
points at a share of the order and the order's amount is missing or too small, or when the
customer's active balance (lots past their hold, before their TTL) cannot cover it. A refused
spend does not take the order's one spend: the shop may try again with fewer points.
"""

from __future__ import annotations

from kopilka.core.ids import derived_id
from schemas.events import BonusSpent, LotPoints, SpendRejected
from schemas.frozen_copy import replaced
from schemas.messages import SpendCommand
from streams.rules.arithmetic import HUNDRED, award_points, money
from streams.rules.builder import Builder, Result, duplicate
from streams.rules.state import CustomerState, OrderState, lot_order


def order_key(cmd: SpendCommand) -> str:
    return cmd.order_id


def handle(state: CustomerState, order: OrderState, cmd: SpendCommand) -> Result:
    if order.spend_command is not None:
        return duplicate(state, order, f"points were already spent on order {cmd.order_id}")
    rules = cmd.rules
    at = cmd.occurred_at
    b = Builder(state, cmd)
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
    new_order = replaced(
        order,
        spend_command=cmd.command_id,
        spend_order_amount=cmd.order_amount,
        spent=tuple(taken),
    )
    return Result(b.state(state), new_order, b.events, "applied")
