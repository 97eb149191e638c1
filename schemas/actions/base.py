"""What an action module declares (`Action`).

An action's module (schemas.actions.<name>) holds, in one place: the payload and envelope
models a shop sends (schemas.inbound), the `ActionRequest` the body means and how it becomes a
command (`command()`, schemas.inbound.request), the command, its rules (`order_key`, `handle`,
on the pure core of schemas.rules) and its events (schemas.event_model: fields, read-model
meaning, Telegram text, dashboard label). It ends with `ACTION = Action(...)`, and one line of
the table in schemas.actions registers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from schemas.event_model import Event
from schemas.inbound.envelope import Envelope
from schemas.messages import Command
from schemas.rules.builder import Result
from schemas.rules.state import CustomerState, OrderState

OrderKey = Callable[[Any], str | None]
Handle = Callable[[CustomerState, OrderState, Any], Result]


class Handler(NamedTuple):
    """A command's rules: the order entry it needs, and what it does."""

    order_key: OrderKey
    handle: Handle


@dataclass(frozen=True)
class Action:
    """One action's parts; each is optional (a referral has no webhook, a batch no rules of its
    own: its items are purchases)."""

    webhook: type[Envelope] | None = None  # the body a shop sends (None: Kopilka makes it)
    command: type[Command] | None = None
    order_key: OrderKey | None = None  # the order entry a command reads and writes
    handle: Handle | None = None  # the rules: (state, order, command) -> Result
    events: tuple[type[Event], ...] = ()
