"""Any command on `loyalty.commands`: the union of every action's command (schemas.actions)
and the settlement sweep's, chosen by `type`, and `parse_command` that reads one."""

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
    "parse_command",
]
