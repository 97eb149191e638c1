"""Settlement: an order past its refund window keeps a marker of a few dozen bytes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from test_rules import CUSTOMER, RULES, T0, TENANT, Ledger

from schemas.commands import PurchaseCommand, RefundCommand
from streams.settlement import ORDERS_PER_COMMAND, due_commands, settled


def _purchase(order: str, command: str = "p-1") -> PurchaseCommand:
    return PurchaseCommand(
        command_id=command,
        request_id="r",
        tenant_id=TENANT,
        customer=CUSTOMER,
        occurred_at=T0,
        rules=RULES,
        order_id=order,
        amount=Decimal(1000),
    )


def test_a_settled_order_is_small_refuses_refunds_and_stays_a_duplicate():
    ledger = Ledger()
    ledger(_purchase("A"))
    full = ledger.orders["A"]
    marker = settled(full)
    assert len(marker.to_bytes()) < len(full.to_bytes()) / 3
    assert len(marker.to_bytes()) < 300
    ledger.orders["A"] = marker
    balance = ledger.state.balance()

    refund = RefundCommand(
        command_id="refund-1",
        request_id="r",
        tenant_id=TENANT,
        customer=CUSTOMER,
        occurred_at=T0 + timedelta(days=20),  # within the lot's TTL
        rules=RULES,
        order_id="A",
        refund_id="full",
    )
    result = ledger(refund)
    assert result.status == "rejected" and "refund window" in result.reason
    assert ledger.state.balance() == balance

    again = ledger(_purchase("A", command="p-retry"))  # a shop's late retry
    assert again.status == "duplicate"
    assert ledger.state.balance() == balance


def test_the_sweep_makes_one_command_per_customer_in_bounded_chunks():
    tenant = "11111111-1111-1111-1111-111111111111"
    rows = [
        {"tenant_id": tenant, "customer_id": "c-1", "order_id": f"o{i}"}
        for i in range(ORDERS_PER_COMMAND + 1)
    ] + [{"tenant_id": tenant, "customer_id": "c-2", "order_id": "x"}]
    cmds = due_commands(rows, T0)
    assert [(c.customer.id, len(c.order_ids)) for c in cmds] == [
        ("c-1", ORDERS_PER_COMMAND),
        ("c-1", 1),
        ("c-2", 1),
    ]
    assert len({c.command_id for c in cmds}) == 3
    assert due_commands(rows, T0)[0].command_id == cmds[0].command_id  # replays are the same
