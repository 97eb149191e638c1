"""What an action module declares (`Action`), and what its request may ask of the worker while
it becomes a command (`Directory`).

An action's module (schemas.actions.<name>) holds, in one place: the payload and envelope
models a shop sends (schemas.inbound), the `ActionRequest` the body means and how it becomes a
command (`command()`), the command, its rules (`order_key`, `handle`, on the pure core of
schemas.rules) and its events (schemas.event_model: fields, read-model meaning, Telegram text,
dashboard label). It ends with `ACTION = Action(...)`, and one line of the table in
schemas.actions registers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from schemas.event_model import Event
from schemas.inbound.envelope import Envelope
from schemas.messages import Command, CustomerRef
from schemas.rules.builder import Result
from schemas.rules.state import CustomerState, OrderState
from schemas.tenant_rules import TenantRules

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


@dataclass(frozen=True)
class Origin:
    """The request a command comes from: what every command of it carries."""

    command_id: str
    request_id: str
    tenant_id: str
    rules: TenantRules
    occurred_at: datetime
    wait: bool

    def fields(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "request_id": self.request_id,
            "tenant_id": self.tenant_id,
            "rules": self.rules,
            "occurred_at": self.occurred_at,
            "wait": self.wait,
        }


class Directory(Protocol):
    """The worker's identity directory, for one request's shop (streams.normalizer). Each call
    retries while Postgres is away; a refusal raises schemas.errors.Refused."""

    async def customer(
        self, email: str | None, phone: str | None, name: str | None = None
    ) -> CustomerRef:
        """Found or created by email and/or phone (the phone in the shop's region)."""
        ...

    async def claim(self, order_id: str, customer: CustomerRef) -> None:
        """The order is this customer's (Refused: it is another's)."""
        ...

    async def order_owner(self, order_id: str) -> CustomerRef | None: ...

    async def referrer(self, customer: CustomerRef, kind: str, value: str) -> str | None:
        """The id of the referrer a registration names (by code, email or phone)."""
        ...

    async def register(
        self, customer: CustomerRef, referrer_id: str | None
    ) -> tuple[str, str | None]:
        """Registers the customer: (their referral code, the referrer kept)."""
        ...
