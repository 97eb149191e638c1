"""schemas.commands: a record of loyalty.commands holds one command or a batch of them."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError
from test_rules import purchase

from schemas.commands import batch_items, command_batch, command_of, parse_command
from schemas.messages import COMMAND_VERSION


def test_a_batch_gives_back_its_commands_in_order():
    commands = [purchase("O-1", 100), purchase("O-2", 100), purchase("O-3", 100)]
    record = command_batch([c.to_bytes() for c in commands])
    items = batch_items(record)
    assert items is not None
    assert [command_of(fields) for fields in items] == commands
    assert orjson.loads(record)["v"] == COMMAND_VERSION == 2


def test_a_single_command_or_anything_else_is_not_a_batch():
    one = purchase("O-1", 100)
    assert batch_items(one.to_bytes()) is None and parse_command(one.to_bytes()) == one
    assert batch_items(b'{"v":2,"type":"batch","commands":[{') is None  # cut short
    assert batch_items(b"[]") is None


def test_a_batch_is_no_command_an_older_worker_could_misread():
    """An older worker (COMMAND_VERSION 1) fails to read it as a command, and its version (2)
    tells it to stop for its upgrade rather than dead-letter it (streams.ledger)."""
    record = command_batch([purchase("O-1", 100).to_bytes()])
    with pytest.raises(ValidationError):
        parse_command(record)
    assert orjson.loads(record)["v"] > 1
