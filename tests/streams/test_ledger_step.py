"""streams.ledger.step reads entries through a cache of decoded states that never disagrees with
the table, and commands are read the same way whether their rules were seen before or not."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from pydantic import ValidationError
from test_rules import CUSTOMER, RULES, T0, TENANT

from schemas.commands import _COMMAND, PurchaseCommand, RefundCommand, parse_command
from schemas.rules.dispatch import apply
from schemas.rules.state import CustomerState, OrderState
from streams import ledger


def _purchase(i: int) -> PurchaseCommand:
    return PurchaseCommand(
        command_id=f"cmd-{i}",
        request_id="req",
        tenant_id=TENANT,
        customer=CUSTOMER,
        occurred_at=T0,
        rules=RULES,
        order_id=f"O-{i}",
        amount=1000,
    )


def test_step_sees_what_the_table_says(monkeypatch):
    table: dict[str, bytes] = {}
    monkeypatch.setattr(ledger, "state_table", table, raising=False)
    key = f"{TENANT}:{CUSTOMER.id}"
    first = ledger.step(key, _purchase(1))
    assert first.status == "applied" and first.state.seq == 1
    table[f"c|{key}"] = CustomerState(seq=40).to_bytes()  # e.g. restored from the changelog
    second = ledger.step(key, _purchase(2))
    assert second.state.seq == 41
    assert CustomerState.from_bytes(table[f"c|{key}"]) == second.state


def test_commands_read_the_same_with_their_rules_cached():
    raw = _purchase(1).to_bytes()
    assert parse_command(raw) == parse_command(raw) == _COMMAND.validate_json(raw)


@pytest.mark.parametrize(
    "change",
    [{"rules": {"base_percent": "-1"}}, {"amount": "lots"}, {"type": "teleport"}, None],
)
def test_a_bad_command_is_a_validation_error(change):
    if change is None:
        raw = b"{not json"
    else:
        raw = orjson.dumps({**orjson.loads(_purchase(1).to_bytes()), **change})
    with pytest.raises(ValidationError):
        parse_command(raw)


async def test_a_table_write_refused_for_unknown_changelog_metadata_is_tried_again():
    """A changelog the worker's metadata does not know yet is no fault of the command: the
    metadata is refreshed and the write tried again, not dead-lettered."""
    from faust.exceptions import PartitionsMismatch

    refused, refreshes = [2], []

    def write() -> str:
        if refused[0]:
            refused[0] -= 1
            raise PartitionsMismatch("the changelog topic has 0 partitions")
        return "written"

    async def refresh() -> None:
        refreshes.append(1)

    assert await ledger.writing_the_table(write, refresh) == "written"
    assert len(refreshes) == 2


async def test_any_other_failure_of_a_table_write_is_raised_at_once():
    def write() -> None:
        raise KeyError("a bug")

    async def refresh() -> None:
        raise AssertionError("not a metadata problem")

    with pytest.raises(KeyError):
        await ledger.writing_the_table(write, refresh)


def _refund(i: int, order: str = "O-1") -> RefundCommand:
    return RefundCommand(
        command_id=f"refund-{i}",
        request_id="req-refund",
        tenant_id=TENANT,
        customer=CUSTOMER,
        occurred_at=T0 + timedelta(minutes=5),
        rules=RULES,
        order_id=order,
        refund_id=f"R-{i}",
        amount=Decimal(400),
    )


def test_a_refund_before_its_purchase_waits_for_it_then_ends_as_in_the_shops_order(monkeypatch):
    table: dict[str, bytes] = {}
    monkeypatch.setattr(ledger, "state_table", table, raising=False)
    key = f"{TENANT}:{CUSTOMER.id}"
    purchase, refund = _purchase(1), _refund(1)

    early = ledger.step(key, refund)
    assert (early.status, early.events) == ("parked", [])
    assert ledger.step(key, refund).status == "parked"  # the same refund again: parked once
    assert len(orjson.loads(table[f"p|{key}|O-1"])) == 1

    done = ledger.step(key, purchase)
    first = apply(CustomerState(), {}, purchase)
    then = apply(first.state, {"O-1": first.order}, refund)
    assert done.events == first.events + then.events  # awarded, then reversed
    assert done.state == then.state
    assert CustomerState.from_bytes(table[f"c|{key}"]) == then.state
    assert OrderState.from_bytes(table[f"o|{key}|O-1"]) == then.order
    assert f"p|{key}|O-1" not in table
    # the refund once more (a replay): what it did, nothing new
    again = ledger.step(key, refund)
    assert again.replayed and again.events == then.events and again.state == then.state


def test_a_refund_after_its_purchase_is_applied_at_once(monkeypatch):
    table: dict[str, bytes] = {}
    monkeypatch.setattr(ledger, "state_table", table, raising=False)
    key = f"{TENANT}:{CUSTOMER.id}"
    ledger.step(key, _purchase(1))
    assert ledger.step(key, _refund(1)).status == "applied"
    assert not any(k.startswith("p|") for k in table)
