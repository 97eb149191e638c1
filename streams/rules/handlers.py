"""The one table of handlers: command class -> how the ledger applies it.

Each action's rules are a module of this package, named after its command's `type`, with two
functions: `order_key(cmd)`, the order entry the command reads and writes within its customer
(None: the customer's entry only), and `handle(state, order, cmd) -> Result`. `apply()`
(streams.rules.dispatch) finds both here; a new action is its module plus one line below.
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


class Handler(NamedTuple):
    order_key: Callable[[Any], str | None]
    handle: Callable[[CustomerState, OrderState, Any], Result]


HANDLERS: dict[type[Command], Handler] = {
    PurchaseCommand: Handler(purchase.order_key, purchase.handle),
    ReferralCommand: Handler(referral.order_key, referral.handle),
    RegisterCommand: Handler(register.order_key, register.handle),
    SpendCommand: Handler(spend.order_key, spend.handle),
    RefundCommand: Handler(refund.order_key, refund.handle),
    ExpireCommand: Handler(expire.order_key, expire.handle),
}
