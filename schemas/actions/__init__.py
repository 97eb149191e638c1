"""Every action Kopilka knows, one module each, and the one table that registers them.

A module (schemas.actions.base says what it declares) holds the action's payload and envelope
models, the request the body means and how it becomes a command, the command, its rules and its
events. The rest of Kopilka reads them from the tables below: the standard format's parser
(`WEBHOOKS`, which is also what the OpenAPI document lists), the command codec
(schemas.commands), the rules core (`HANDLERS`, schemas.rules.dispatch), the event contract
(schemas.events), the read model and the Telegram texts (each event's own description).
A new action is a new module and its line in `ACTIONS` (CONTRIBUTING.md, "Add an action").
"""

from __future__ import annotations

from schemas.actions import expire, purchase, purchase_batch, referral, refund, register, spend
from schemas.actions.base import Action, Handler
from schemas.event_model import Event
from schemas.inbound.envelope import Envelope
from schemas.messages import Command

ACTIONS: tuple[Action, ...] = (
    purchase.ACTION,
    purchase_batch.ACTION,
    register.ACTION,
    spend.ACTION,
    refund.ACTION,
    referral.ACTION,
    expire.ACTION,
)

# the standard format's bodies by action name, in the order the table lists them
WEBHOOKS: dict[str, type[Envelope]] = {
    a.webhook.named(): a.webhook for a in ACTIONS if a.webhook is not None
}
COMMANDS: tuple[type[Command], ...] = tuple(a.command for a in ACTIONS if a.command is not None)
HANDLERS: dict[type[Command], Handler] = {
    a.command: Handler(a.order_key, a.handle)
    for a in ACTIONS
    if a.command is not None and a.order_key is not None and a.handle is not None
}
EVENTS: tuple[type[Event], ...] = tuple(e for a in ACTIONS for e in a.events)

__all__ = ["ACTIONS", "COMMANDS", "EVENTS", "HANDLERS", "WEBHOOKS", "Action"]
