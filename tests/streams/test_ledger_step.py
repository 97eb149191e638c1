"""streams.ledger.step reads entries through a cache of decoded states that never disagrees with
the table, and commands are read the same way whether their rules were seen before or not."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError
from test_rules import CUSTOMER, RULES, T0, TENANT

from schemas.messages import _COMMAND, PurchaseCommand, parse_command
from streams import ledger
from streams.rules import CustomerState


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


def test_a_cached_state_is_used_only_for_the_very_bytes_the_table_holds():
    cache = ledger.DecodedStates(size=2)
    state = CustomerState(seq=3, purchases=3)
    data = cache.stored("c|k", state)
    assert cache.load("c|k", data) is state
    other = CustomerState(seq=4, purchases=4).to_bytes()  # written elsewhere meanwhile
    assert cache.load("c|k", other) == CustomerState(seq=4, purchases=4)
    assert cache.load("c|k", None) == CustomerState()  # no entry: a new customer
    for key in ("c|a", "c|b", "c|c"):
        cache.stored(key, state)
    assert len(cache._held) == 2


def test_step_sees_what_the_table_says(monkeypatch):
    table: dict[str, bytes] = {}
    monkeypatch.setattr(ledger, "ledger_table", table)
    monkeypatch.setattr(ledger, "_customers", ledger.DecodedStates())
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
