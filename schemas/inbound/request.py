"""What a body of an action other than purchases means (`ActionRequest`, subclassed by each
action's module, schemas.actions), and what it may ask of the worker while it becomes a
command: the request's `Origin` and the identity `Directory` (streams.normalizer provides it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from schemas.messages import Command, CustomerRef
from schemas.tenant_rules import TenantRules


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


class ActionRequest(BaseModel):
    """What an action's body means (other than purchases): the action's module subclasses it
    with the canonical fields and says how it becomes a command (`command`, in the worker's
    normaliser, streams.normalizer). The ingress reads the rest, to route and answer it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def names(self) -> tuple[str | None, str | None]:
        """The customer it names: (email, phone), either may be None."""
        return None, None

    def claimed_order(self) -> str | None:
        """The order it claims for its customer (one spend per order), if any."""
        return None

    def owner_order(self) -> str | None:
        """The order whose owner it concerns, when it names no customer (a refund): it is
        routed behind that customer's requests."""
        return None

    async def command(self, directory: Directory, origin: Origin) -> Command:
        """The one command this request makes (schemas.errors.Refused: it cannot be done)."""
        raise NotImplementedError
