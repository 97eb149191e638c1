"""An expiry sweep's command: expire the lots whose time has come, and nothing else.

Every command expires due lots before anything else (`Builder.expire_due`); the sweep's command
is for customers who send none. With nothing due it emits nothing and reports `duplicate`.
"""

from __future__ import annotations

from typing import Literal

from schemas.actions.base import Action
from schemas.messages import Command
from schemas.rules.builder import Builder, Result
from schemas.rules.state import CustomerState, OrderState


class ExpireCommand(Command):
    """Made by the expiry sweep: expire the customer's lots that expired by `occurred_at`."""

    type: Literal["expire"] = "expire"


def order_key(cmd: ExpireCommand) -> None:
    return None  # the customer's lots: no order entry


def handle(state: CustomerState, order: OrderState, cmd: ExpireCommand) -> Result:
    b = Builder(state, cmd)
    b.expire_due()
    if not b.events:
        return Result(state, None, [], "duplicate", reason="nothing to expire")
    return Result(b.state(state), None, b.events, "applied")


# Its event, bonus_expired, is any command's (schemas.event_model.BonusExpired).
ACTION = Action(command=ExpireCommand, order_key=order_key, handle=handle)
