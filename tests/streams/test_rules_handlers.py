"""The one table of handlers (streams.rules.handlers): every command the ledger applies has its
entry, each entry's module is where its rules live, and the table alone decides the order key."""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

import streams.rules
from schemas.messages import (
    AnyCommand,
    CustomerRef,
    ExpireCommand,
    PurchaseCommand,
    ReferralCommand,
    RefundCommand,
    RegisterCommand,
    SettleCommand,
    SpendCommand,
)
from schemas.tenant_rules import TenantRules
from streams.rules import CustomerState, apply, order_key
from streams.rules.handlers import HANDLERS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE = {
    "request_id": "req-1",
    "tenant_id": "t-1",
    "customer": CustomerRef(id="c-1"),
    "occurred_at": T0,
}
RULED = {**BASE, "rules": TenantRules()}
RULES_DIR = Path(streams.rules.__file__).parent


def test_every_command_but_settle_has_a_handler_and_settle_has_none():
    commands = set(typing.get_args(typing.get_args(AnyCommand)[0]))
    assert set(HANDLERS) == commands - {SettleCommand}


@pytest.mark.parametrize("command", HANDLERS, ids=lambda c: c.__name__)
def test_each_action_lives_in_its_own_module_of_the_package(command):
    handler = HANDLERS[command]
    module = handler.handle.__module__
    assert module == handler.order_key.__module__
    assert module.startswith("streams.rules.")
    assert module.rsplit(".", 1)[1] == command.model_fields["type"].default
    assert (RULES_DIR / f"{module.rsplit('.', 1)[1]}.py").is_file()


def test_every_module_of_the_rules_core_stays_under_400_lines():
    for path in RULES_DIR.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name


def test_the_order_key_each_command_reads_and_writes():
    assert order_key(PurchaseCommand(command_id="p", order_id="O-1", amount=1, **RULED)) == "O-1"
    assert order_key(SpendCommand(command_id="s", order_id="O-2", points=1, **RULED)) == "O-2"
    refund = RefundCommand(command_id="r", order_id="O-3", refund_id="R-1", **RULED)
    assert order_key(refund) == "O-3"
    referral = ReferralCommand(
        command_id="f", order_id="O-4", referee_id="c-2", amount=Decimal(1), **RULED
    )
    assert order_key(referral) == "referral:c-2:O-4"
    assert order_key(RegisterCommand(command_id="g", referral_code="X", **RULED)) is None
    assert order_key(ExpireCommand(command_id="e", **BASE)) is None
    assert order_key(SettleCommand(command_id="z", order_ids=["O-1"], **BASE)) is None


def test_apply_refuses_a_command_the_table_does_not_know():
    settle = SettleCommand(command_id="z", order_ids=["O-1"], **BASE)
    with pytest.raises(KeyError):
        apply(CustomerState(), {}, settle)
