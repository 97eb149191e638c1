"""A referral award: the referrer's share (`referral_percent`) of a referee's purchase.

Made by the referee's ledger (streams.rules.purchase) and applied on the referrer's own key. Its
order entry, keyed by referee and order, makes it one award per referred purchase; it is a lot
like any award, but does not count towards the referrer's lifetime spend.
"""

from __future__ import annotations

from kopilka.core.ids import derived_id
from schemas.events import ReferralAwarded
from schemas.frozen_copy import replaced
from schemas.messages import ReferralCommand
from streams.rules.arithmetic import award_points, money
from streams.rules.builder import Builder, Result, duplicate
from streams.rules.state import CustomerState, OrderState


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
    new_order = replaced(
        order, purchase_command=cmd.command_id, award_lot=lot.lot_id, awarded=points
    )
    return Result(b.state(state), new_order, b.events, "applied")
