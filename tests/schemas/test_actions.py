"""The one table of actions (schemas.actions): every command the ledger applies has its rules
there, each action's parts (webhook, command, rules, events) live in its own module, and the
table alone decides the order key and what the standard format and the event contract know."""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

import schemas.actions
from schemas.actions import ACTIONS, EVENTS, HANDLERS, WEBHOOKS
from schemas.commands import (
    AnyCommand,
    ExpireCommand,
    PurchaseCommand,
    ReferralCommand,
    RefundCommand,
    RegisterCommand,
    SpendCommand,
)
from schemas.messages import CustomerRef, SettleCommand
from schemas.rules.dispatch import apply, order_key
from schemas.rules.state import CustomerState
from schemas.tenant_rules import TenantRules

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE = {
    "request_id": "req-1",
    "tenant_id": "t-1",
    "customer": CustomerRef(id="c-1"),
    "occurred_at": T0,
}
RULED = {**BASE, "rules": TenantRules()}
ACTIONS_DIR = Path(schemas.actions.__file__).parent
RULES_DIR = ACTIONS_DIR.parent / "rules"


def test_every_command_but_settle_has_a_handler_and_settle_has_none():
    commands = set(typing.get_args(typing.get_args(AnyCommand)[0]))
    assert set(HANDLERS) == commands - {SettleCommand}


@pytest.mark.parametrize("command", HANDLERS, ids=lambda c: c.__name__)
def test_each_action_lives_in_its_own_module_of_the_package(command):
    handler = HANDLERS[command]
    module = handler.handle.__module__
    assert module == handler.order_key.__module__ == command.__module__
    assert module.startswith("schemas.actions.")
    assert module.rsplit(".", 1)[1] == command.model_fields["type"].default
    assert (ACTIONS_DIR / f"{module.rsplit('.', 1)[1]}.py").is_file()


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: repr(a.command or a.webhook))
def test_an_actions_webhook_and_events_live_in_its_module(action):
    modules = {part.__module__ for part in (action.webhook, action.command) if part is not None}
    modules |= {event.__module__ for event in action.events}
    modules |= {action.handle.__module__} if action.handle is not None else set()
    assert len(modules) == 1, modules


def test_the_table_is_what_the_standard_format_and_the_event_contract_know():
    from schemas.events import EVENT_TYPES
    from schemas.inbound import InboundError, parse_webhook

    for name in ("purchase", "batch_purchase", "register_user", "spend_bonuses", "refund"):
        assert WEBHOOKS[name].named() == name
    with pytest.raises(InboundError) as refused:
        parse_webhook(b'{"action": "nope", "payload": {}}', "application/json")
    assert refused.value.reason.endswith("supported: " + ", ".join(WEBHOOKS))
    common = {EVENT_TYPES["level_changed"], EVENT_TYPES["bonus_expired"]}
    assert set(EVENTS) | common == set(EVENT_TYPES.values())


def test_every_module_of_the_rules_core_and_the_actions_stays_under_400_lines():
    for path in [*RULES_DIR.glob("*.py"), *ACTIONS_DIR.glob("*.py")]:
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


def test_every_event_type_names_itself_for_the_dashboard_in_both_languages():
    from schemas.events import EVENT_TYPES

    for kind, model in EVENT_TYPES.items():
        assert set(model.labels) == {"en", "ru"}, kind
        assert all(model.labels.values()), kind


def test_the_contract_lists_its_first_types_in_their_first_order():
    """The order shows in the event stream's 422 and on the dashboard page."""
    from schemas.events import EVENT_TYPES

    assert list(EVENT_TYPES)[:9] == [
        "bonus_awarded",
        "referral_awarded",
        "level_changed",
        "customer_registered",
        "bonus_spent",
        "spend_rejected",
        "bonus_expired",
        "bonus_reversed",
        "bonus_returned",
    ]
