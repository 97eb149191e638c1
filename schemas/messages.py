"""Internal records on Kopilka's own topics: raw envelopes, audit records, dead letters, commands.

These are not public contracts (the public one is `schemas.events`), but they are versioned all
the same so that a worker can read what an older ingress wrote.
"""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

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


class CustomerRef(Record):
    id: str
    email: str | None = None
    phone: str | None = None


COMMAND_VERSION = 1  # the newest command version this code reads


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
        return f"{self.tenant_id}:{self.customer.id}".encode()


class RuledCommand(Command):
    rules: TenantRules


class PurchaseCommand(RuledCommand):
    type: Literal["purchase"] = "purchase"
    order_id: str
    amount: Decimal
    description: str | None = None


class RegisterCommand(RuledCommand):
    type: Literal["register"] = "register"
    name: str | None = None
    referral_code: str
    referrer_id: str | None = None


class SpendCommand(RuledCommand):
    type: Literal["spend"] = "spend"
    order_id: str
    points: int = Field(gt=0)
    order_amount: Decimal | None = None


class RefundCommand(RuledCommand):
    type: Literal["refund"] = "refund"
    order_id: str
    refund_id: str
    amount: Decimal | None = Field(None, description="None: refund whatever is left")


class ReferralCommand(RuledCommand):
    """Made by the referee's ledger, applied on the referrer's key."""

    type: Literal["referral"] = "referral"
    order_id: str
    referee_id: str
    amount: Decimal


class ExpireCommand(Command):
    """Made by the expiry sweep: expire the customer's lots that expired by `occurred_at`."""

    type: Literal["expire"] = "expire"


class SettleCommand(Command):
    """Made by the settlement sweep: these orders' refund window has ended; shrink their
    entries to what idempotency needs (streams.settlement)."""

    type: Literal["settle"] = "settle"
    order_ids: list[str]


AnyCommand = Annotated[
    PurchaseCommand
    | RegisterCommand
    | SpendCommand
    | RefundCommand
    | ReferralCommand
    | ExpireCommand
    | SettleCommand,
    Field(discriminator="type"),
]
_COMMAND: TypeAdapter[Command] = TypeAdapter(AnyCommand)
# Every command carries its tenant's rules, and a shop's commands carry the same rules until
# the shop changes them: validated once per distinct rules text, not once per command (it was
# half the cost of reading a command). Bounded; cleared when full.
_RULES: dict[bytes, TenantRules] = {}
_RULES_KEPT = 1024


def parse_command(data: bytes) -> Command:
    """The command in `data`; pydantic's ValidationError when it is not a valid one."""
    try:
        fields = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _COMMAND.validate_json(data)  # raises the ValidationError the caller expects
    rules = fields.get("rules") if isinstance(fields, dict) else None
    if isinstance(rules, dict):
        text = orjson.dumps(rules)
        held = _RULES.get(text)
        if held is None:
            try:
                held = TenantRules.model_validate(rules)
            except ValidationError:
                return _COMMAND.validate_json(data)  # the error as the whole command's
            if len(_RULES) >= _RULES_KEPT:
                _RULES.clear()
            _RULES[text] = held
        fields["rules"] = held
    return _COMMAND.validate_python(fields)


class Outcome(Record):
    """`loyalty.outcomes`, key request_id: what became of one command (for `Prefer: wait`)."""

    v: Literal[1] = 1
    request_id: str
    command_id: str
    item: int = 0
    status: Literal["applied", "duplicate", "rejected"]
    events: list[dict[str, Any]] = Field(default_factory=list)
    reason: str | None = None
