"""The one table of actions: command class -> how the ledger applies it.

An action is a module of this package with two functions: `order_key(cmd)`, the order entry the
command reads and writes within its customer (None: the customer's entry only), and
`handle(state, order, cmd) -> Result`. `apply()` (streams.rules.dispatch) finds both here; a new
action is its module plus one line below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from schemas.messages import (
    Command,
    ExpireCommand,
    PurchaseCommand,
    ReferralCommand,
    RefundCommand,
    RegisterCommand,
    SpendCommand,
)
from streams.rules import expire, purchase, referral, refund, register, spend
from streams.rules.builder import Result
from streams.rules.state import CustomerState, OrderState


class Action(NamedTuple):
    order_key: Callable[[Any], str | None]
    handle: Callable[[CustomerState, OrderState, Any], Result]


ACTIONS: dict[type[Command], Action] = {
    PurchaseCommand: Action(purchase.order_key, purchase.handle),
    ReferralCommand: Action(referral.order_key, referral.handle),
    RegisterCommand: Action(register.order_key, register.handle),
    SpendCommand: Action(spend.order_key, spend.handle),
    RefundCommand: Action(refund.order_key, refund.handle),
    ExpireCommand: Action(expire.order_key, expire.handle),
}
