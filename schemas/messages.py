"""Internal records on Kopilka's own topics: raw envelopes, audit records, dead letters, commands.

Each action's command is in its module (schemas.actions); `schemas.commands` reads any of them.
These are not public contracts (the public one is `schemas.events`), but they are versioned all
the same so that a worker can read what an older ingress wrote.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.tenant_rules import TenantRules


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)  # model_dump_json's bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls.model_validate_json(data)


class RawEnvelope(Record):
    """`webhooks.raw`: one accepted request body, exactly as the shop sent it."""

    v: Literal[1] = 1
    event_id: str
    tenant_id: str
    received_at: datetime
    content_type: str | None
    body: str = Field("", description="the body, when it is UTF-8 text")
    body_b64: str | None = Field(None, description="the body in base64, when it is not UTF-8")
    wait: bool = Field(False, description="someone waits for the outcomes (`Prefer: wait`)")
    # on webhooks.deferred only (streams.deferral): a refund waiting for its purchase
    deferred_until: datetime | None = Field(None, description="refused as unknown after this")
    not_before: datetime | None = Field(None, description="tried again from this time on")
    stored_at: datetime | None = Field(
        None, description="when this deployment's webhooks.raw stored it (a replay is younger)"
    )

    @classmethod
    def wrap(cls, body: bytes, **fields: Any) -> RawEnvelope:
        try:
            return cls(body=body.decode("utf-8"), **fields)
        except UnicodeDecodeError:  # e.g. a cp1251 form: keep the exact bytes
            return cls(body_b64=base64.b64encode(body).decode("ascii"), **fields)

    def raw_body(self) -> bytes:
        if self.body_b64 is not None:
            return base64.b64decode(self.body_b64)
        return self.body.encode("utf-8")


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


_AUDIT_LINES = TypeAdapter(list[AuditRecord])


def audit_lines(data: bytes) -> list[AuditRecord]:
    """A record of `webhooks.audit` or `webhooks.dead`: one request's line (the ingress's
    refusals, the normaliser's dead requests), or the lines of many, a JSON array (the
    normaliser's acceptances: one record per tenant per batch, not one per request)."""
    if data[:1] == b"[":
        return _AUDIT_LINES.validate_json(data)
    return [AuditRecord.from_bytes(data)]


def audit_batch(lines: list[AuditRecord]) -> bytes:
    """Many requests' lines as one record, which `audit_lines` reads."""
    return _AUDIT_LINES.dump_json(lines)


class CustomerRef(Record):
    id: str
    email: str | None = None
    phone: str | None = None


def customer_key(tenant_id: str, customer_id: str) -> bytes:
    """The key of a customer's commands, events and ledger entries: `tenant_id:customer_id`."""
    return f"{tenant_id}:{customer_id}".encode()


# The newest `loyalty.commands` record this code reads: 1, one command; 2, a batch of them
# (schemas.commands.command_batch). A worker that meets a newer one stops for its upgrade.
COMMAND_VERSION = 2


class Command(Record):
    """`loyalty.commands`, key `tenant_id:customer_id`: one thing to do to one customer's ledger.

    `command_id` derives from the request (or the sweep) that made it, so re-processing the same
    input makes the same command; `request_id` is the webhook's event_id (for outcomes)."""

    v: Literal[1] = 1
    type: str
    command_id: str
    request_id: str
    item: int = 0
    tenant_id: str
    customer: CustomerRef
    occurred_at: datetime
    # Outcomes go to `loyalty.outcomes` only when the request's sender waits for them: a record
    # (and its encoding) per command saved for the vast majority that do not.
    wait: bool = False

    @property
    def key(self) -> bytes:
        return customer_key(self.tenant_id, self.customer.id)


class RuledCommand(Command):
    rules: TenantRules


class SettleCommand(Command):
    """Made by the settlement sweep: these orders' refund window has ended; shrink their
    entries to what idempotency needs (streams.settlement)."""

    type: Literal["settle"] = "settle"
    order_ids: list[str]


class Outcome(Record):
    """`loyalty.outcomes`, key request_id: what became of one command (for `Prefer: wait`)."""

    v: Literal[1] = 1
    request_id: str
    command_id: str
    item: int = 0
    status: Literal["applied", "duplicate", "rejected"]
    events: list[dict[str, Any]] = Field(default_factory=list)
    reason: str | None = None
