"""Any command on `loyalty.commands`: the union of every action's command (schemas.actions)
and the settlement sweep's, chosen by `type`, and `parse_command` that reads one.

A record on `loyalty.commands` holds one command, or (version 2) a batch of them: the
normaliser sends the commands of one batch of requests that go to the same partition as one
record (`command_batch`), in their order, each carrying its own customer (and tenant) inside it;
the record's key is its first command's (`batch_items` reads them back). A record and a stream
step per command was most of what the commands hop cost per purchase; what the ledger does with
each command does not change.
"""

from __future__ import annotations

from typing import Annotated, Union

import orjson
from pydantic import Field, TypeAdapter, ValidationError

from schemas.actions import COMMANDS
from schemas.actions.expire import ExpireCommand
from schemas.actions.purchase import PurchaseCommand
from schemas.actions.referral import ReferralCommand
from schemas.actions.refund import RefundCommand
from schemas.actions.register import RegisterCommand
from schemas.actions.spend import SpendCommand
from schemas.messages import Command, SettleCommand
from schemas.tenant_rules import TenantRules

_ALL: tuple[type[Command], ...] = (*COMMANDS, SettleCommand)
# a union of the types in a tuple, made at run time (mypy cannot see through it)
AnyCommand = Annotated[Union[_ALL], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
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
    return command_of(fields)


def command_of(fields: object) -> Command:
    """The command these decoded JSON fields make (`fields` may be changed); pydantic's
    ValidationError when they do not make a valid one."""
    rules = fields.get("rules") if isinstance(fields, dict) else None
    if isinstance(rules, dict):
        text = orjson.dumps(rules)
        held = _RULES.get(text)
        if held is None:
            try:
                held = TenantRules.model_validate(rules)
            except ValidationError:
                return _COMMAND.validate_python(fields)  # the error as the whole command's
            if len(_RULES) >= _RULES_KEPT:
                _RULES.clear()
            _RULES[text] = held
        assert isinstance(fields, dict)
        fields["rules"] = held
    return _COMMAND.validate_python(fields)


_BATCH_HEAD = b'{"v":2,"type":"batch","commands":['


def command_batch(commands: list[bytes]) -> bytes:
    """One record holding these encoded commands, in this order (each a JSON object)."""
    return _BATCH_HEAD + b",".join(commands) + b"]}"


def batch_items(data: bytes) -> list[object] | None:
    """The decoded JSON of each command a batch record holds, in order; None when `data` is not
    a batch (a single command, or not readable at all: `parse_command` says why)."""
    if not data.startswith(_BATCH_HEAD):
        return None
    try:
        fields = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    items = fields.get("commands") if isinstance(fields, dict) else None
    return items if isinstance(items, list) else None


__all__ = [
    "AnyCommand",
    "Command",
    "ExpireCommand",
    "PurchaseCommand",
    "ReferralCommand",
    "RefundCommand",
    "RegisterCommand",
    "SettleCommand",
    "SpendCommand",
    "batch_items",
    "command_batch",
    "command_of",
    "parse_command",
]
