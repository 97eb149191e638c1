"""An expiry sweep's command: expire the lots whose time has come, and nothing else.

Every command expires due lots before anything else (`Builder.expire_due`); the sweep's command
is for customers who send none. With nothing due it emits nothing and reports `duplicate`.
"""

from __future__ import annotations

from schemas.messages import ExpireCommand
from streams.rules.builder import Builder, Result
from streams.rules.state import CustomerState, OrderState


def order_key(cmd: ExpireCommand) -> None:
    return None  # the customer's lots: no order entry


def handle(state: CustomerState, order: OrderState, cmd: ExpireCommand) -> Result:
    b = Builder(state, cmd)
    b.expire_due()
    if not b.events:
        return Result(state, None, [], "duplicate", reason="nothing to expire")
    return Result(b.state(state), None, b.events, "applied")
