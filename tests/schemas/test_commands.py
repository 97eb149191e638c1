"""schemas.commands: a record of loyalty.commands holds one command or a batch of them."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from pydantic import ValidationError
from test_rules import CUSTOMER, RULES, T0, TENANT

from schemas.commands import PurchaseCommand, batch_items, command_batch, command_of, parse_command
from schemas.messages import COMMAND_VERSION


def _purchase(order_id: str) -> PurchaseCommand:
    return PurchaseCommand(
        command_id=f"buy-{order_id}",
        request_id=f"req-{order_id}",
        tenant_id=TENANT,
        customer=CUSTOMER,
        occurred_at=T0,
        rules=RULES,
        order_id=order_id,
        amount=Decimal(100),
    )


def test_a_batch_gives_back_its_commands_in_order():
    commands = [_purchase("O-1"), _purchase("O-2"), _purchase("O-3")]
    record = command_batch([c.to_bytes() for c in commands])
    items = batch_items(record)
    assert items is not None
    assert [command_of(fields) for fields in items] == commands
    assert orjson.loads(record)["v"] == COMMAND_VERSION == 2


def test_a_single_command_or_anything_else_is_not_a_batch():
    single = _purchase("O-1").to_bytes()
    assert batch_items(single) is None and parse_command(single) == _purchase("O-1")
    assert batch_items(b'{"v":2,"type":"batch","commands":[{') is None  # cut short
    assert batch_items(b"[]") is None


def test_a_batch_is_no_command_an_older_worker_could_misread():
    """An older worker (COMMAND_VERSION 1) fails to read it as a command, and its version (2)
    tells it to stop for its upgrade rather than dead-letter it (streams.ledger)."""
    record = command_batch([_purchase("O-1").to_bytes()])
    with pytest.raises(ValidationError):
        parse_command(record)
    assert orjson.loads(record)["v"] > 1
