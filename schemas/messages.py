"""Internal records on Kopilka's own topics: raw envelopes, audit records, dead letters, commands.

These are not public contracts (the public one is `schemas.events`), but they are versioned all
the same so that a worker can read what an older ingress wrote.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes):
        return cls.model_validate_json(data)


class RawEnvelope(Record):
    """`webhooks.raw`: one accepted request body, exactly as the shop sent it."""

    v: Literal[1] = 1
    event_id: str
    tenant_id: str
    received_at: datetime
    content_type: str | None
    body: str


class AuditRecord(Record):
    """The audit trail of one request: `webhooks.audit` carries the ingress's refusals and the
    normaliser's acceptances, `webhooks.dead` what the normaliser could not use."""

    v: Literal[1] = 1
    event_id: str
    tenant_id: str
    received_at: datetime
    status: Literal["accepted", "rejected", "dead"]
    http_status: int | None = None
    code: str
    field: str | None = None
    reason: str
    content_type: str | None = None
    body_bytes: int | None = None


class TenantRules(Record):
    """The tenant's rules as they stood when the command was made: replays stay deterministic."""

    base_percent: Decimal
    bonus_ttl_days: int
    rounding: Literal["floor", "half_up"] = "floor"


class CustomerRef(Record):
    id: str
    email: str | None = None
    phone: str | None = None


class PurchaseCommand(Record):
    """`loyalty.commands`, key `tenant_id:customer_id`."""

    v: Literal[1] = 1
    type: Literal["purchase"] = "purchase"
    command_id: str
    source_event_id: str
    tenant_id: str
    customer: CustomerRef
    order_id: str
    amount: Decimal
    description: str | None = None
    occurred_at: datetime
    rules: TenantRules

    @property
    def key(self) -> bytes:
        return f"{self.tenant_id}:{self.customer.id}".encode()
