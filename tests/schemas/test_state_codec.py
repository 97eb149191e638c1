"""The ledger table's entries (schemas.rules.state) are read and written byte for byte as before.

Customer and order entries live in RocksDB and in the changelog topic, so a worker of this
version must read what earlier ones wrote and write what they would have written: the golden
file holds every entry a scenario of each command type wrote when the entries were pydantic
models (registration with a referrer, purchases at whole and fractional seconds, a level up,
a spend over several lots, a partial and a full refund, an expiry, a settled order). Each
command is read back from its JSON first, as the ledger reads it from Kafka (pydantic's own UTC
tzinfo on its time), and one is stamped +03:00 (its lot keeps that offset). Regenerate
it only for a deliberate format change: `python tests/schemas/test_state_codec.py --write`.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import orjson

from schemas.commands import (
    ExpireCommand,
    PurchaseCommand,
    RefundCommand,
    RegisterCommand,
    SpendCommand,
    parse_command,
)
from schemas.messages import Command, CustomerRef
from schemas.rules.dispatch import apply, order_key
from schemas.rules.state import CustomerState, OrderState
from schemas.tenant_rules import Level, TenantRules
from streams.settlement import settled

GOLDEN = Path(__file__).parent / "data" / "ledger_entries.jsonl"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RULES = TenantRules(
    base_percent=Decimal(5),
    levels=(Level(name="silver", min_lifetime_spend=Decimal(10_000), bonus_percent=Decimal(2)),),
    referral_percent=Decimal(3),
    bonus_ttl_days=30,
    hold_days=1,
    max_spend_percent=Decimal(100),
)
MSK = timezone(timedelta(hours=3))
CUSTOMER = CustomerRef(id="22222222-2222-2222-2222-222222222222", email="a@example.com")


def _commands() -> list[Command]:
    n = iter(range(1, 100))

    def common(at: datetime) -> dict:
        return {
            "command_id": f"cmd-{next(n)}",
            "request_id": "req-1",
            "tenant_id": "11111111-1111-1111-1111-111111111111",
            "customer": CUSTOMER,
            "occurred_at": at,
            "rules": RULES,
        }

    def at(seconds: float, tz: timezone = UTC) -> datetime:
        return (T0 + timedelta(seconds=seconds)).astimezone(tz)

    expire = common(at(40 * 86400))
    del expire["rules"]
    return [
        RegisterCommand(
            referral_code="ANNA-7",
            referrer_id="33333333-3333-3333-3333-333333333333",
            **common(at(0)),
        ),
        PurchaseCommand(order_id="O-1", amount=Decimal("9000"), **common(at(1))),
        PurchaseCommand(order_id="O-2", amount=Decimal("2000.50"), **common(at(2.25))),
        PurchaseCommand(order_id="O-3", amount=Decimal("1000"), **common(at(3.000001, MSK))),
        SpendCommand(
            order_id="O-4", points=500, order_amount=Decimal("700"), **common(at(2 * 86400))
        ),
        RefundCommand(
            order_id="O-4", refund_id="R-1", amount=Decimal("100"), **common(at(2 * 86400 + 5))
        ),
        RefundCommand(order_id="O-2", refund_id="R-2", amount=None, **common(at(2 * 86400 + 6))),
        ExpireCommand(**expire),
    ]


def entries() -> list[bytes]:
    """Every entry the scenario writes, in order (and each order entry settled at the end)."""
    state, orders, written = CustomerState(), {}, []
    for sent in _commands():
        cmd = parse_command(sent.to_bytes())
        result = apply(state, orders, cmd)
        state = result.state
        written.append(state.to_bytes())
        key = order_key(cmd)
        if key is not None and result.order is not None:
            orders[key] = result.order
            written.append(result.order.to_bytes())
    written += [settled(order).to_bytes() for order in orders.values()]
    return written


def test_entries_are_written_as_before():
    golden = GOLDEN.read_bytes().splitlines()
    assert entries() == golden


def test_entries_written_before_read_back_to_the_same_bytes():
    for line in GOLDEN.read_bytes().splitlines():
        model = CustomerState if line.startswith(b'{"seq"') else OrderState
        assert model.from_bytes(line).to_bytes() == line


def test_the_scenario_covers_every_kind_of_entry():
    golden = [orjson.loads(line) for line in GOLDEN.read_bytes().splitlines()]
    states = [g for g in golden if "seq" in g]
    assert max(len(s["lots"]) for s in states) >= 3 and any(s["level"] for s in states)
    assert any(s["referrer_id"] for s in states) and any(s["last_order"] for s in states)
    orders = [g for g in golden if "seq" not in g]
    assert any(o["spent"] for o in orders) and any(o["refunds"] for o in orders)
    assert any(o["settled"] for o in orders) and any(o["emitted"] for o in orders)
    lots = [lot for s in states for lot in s["lots"]]
    assert any(lot["expires_at"].endswith("+03:00") for lot in lots)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    GOLDEN.write_bytes(b"\n".join(entries()) + b"\n")
