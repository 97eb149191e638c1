"""A registration: once per customer, with their referral code and who referred them.

The referrer kept here is who a later purchase awards (streams.rules.purchase).
"""

from __future__ import annotations

from kopilka.core.ids import derived_id
from schemas.events import CustomerRegistered
from schemas.messages import RegisterCommand
from streams.rules.builder import Builder, Result, duplicate
from streams.rules.state import CustomerState, OrderState


def order_key(cmd: RegisterCommand) -> None:
    return None  # a customer's own fact: no order entry


def handle(state: CustomerState, order: OrderState, cmd: RegisterCommand) -> Result:
    if state.registered:
        return duplicate(state, None, "the customer is already registered")
    b = Builder(state, cmd)
    b.expire_due()
    b.emit(
        CustomerRegistered,
        derived_id(cmd.tenant_id, cmd.customer.id, "customer_registered"),
        name=cmd.name,
        referral_code=cmd.referral_code,
        referrer_id=cmd.referrer_id,
    )
    new_state = b.state(
        state,
        registered=True,
        referral_code=cmd.referral_code,
        referrer_id=cmd.referrer_id,
    )
    return Result(new_state, None, b.events, "applied")
