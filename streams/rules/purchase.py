"""A purchase: one award per order, `base_percent` plus the level's bonus of the amount.

The award is a lot, spendable after the tenant's hold and gone after its TTL; the amount counts
towards the customer's lifetime spend, and so towards their level (`level_changed`). A customer
who came by referral earns their referrer an award too: a `ReferralCommand` on the referrer's key
(streams.rules.referral), on the first purchase or on every one, as the tenant's rules say.
"""

from __future__ import annotations

from kopilka.core.ids import derived_id
from schemas.events import BonusAwarded
from schemas.frozen_copy import replaced
from schemas.messages import Command, CustomerRef, PurchaseCommand, ReferralCommand
from streams.rules.arithmetic import award_points, money
from streams.rules.builder import Builder, Result, duplicate
from streams.rules.state import CustomerState, OrderState


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
    new_order = replaced(
        order,
        purchase_command=cmd.command_id,
        amount=cmd.amount,
        award_lot=lot.lot_id if points else None,
        awarded=points,
    )
    new_state = b.state(state, purchases=state.purchases + 1)
    return Result(new_state, new_order, b.events, "applied", followups)
