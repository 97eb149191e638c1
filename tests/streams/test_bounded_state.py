"""A customer's state stays small however many awards it holds: lots with the same times merge."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from test_rules import CUSTOMER, RULES, T0, TENANT, Ledger

from kopilka.core.ids import derived_id
from schemas.commands import PurchaseCommand, RefundCommand, SpendCommand
from schemas.events import parse_event


def _purchase(i: int, at=T0, amount=Decimal(1000)) -> PurchaseCommand:
    return PurchaseCommand(
        command_id=derived_id("batch", i),
        request_id="batch",
        item=i,
        tenant_id=TENANT,
        customer=CUSTOMER,
        occurred_at=at,
        rules=RULES.model_copy(update={"levels": ()}),
        order_id=f"B-{i}",
        amount=amount,
    )


def test_one_batch_for_one_customer_is_one_lot_and_a_small_entry():
    ledger = Ledger()
    for i in range(3000):
        ledger(_purchase(i))
    state = ledger.state
    assert len(state.lots) == 1
    assert state.balance() == 3000 * 50
    assert len(state.to_bytes()) < 8_000  # the same size after 3 awards or 3,000
    first = parse_event(ledger.log[0][1][0].encode())
    later = parse_event(ledger.log[-1][1][0].encode())
    assert later.lot_id == first.lot_id == first.event_id != later.event_id


def test_awards_at_other_times_keep_their_own_lots():
    ledger = Ledger()
    ledger(_purchase(1))
    ledger(_purchase(2, at=T0 + timedelta(seconds=1)))
    assert len(ledger.state.lots) == 2


def test_spend_and_refund_work_on_a_merged_lot():
    ledger = Ledger()
    for i in range(4):
        ledger(_purchase(i))  # 4 x 50 points, one lot
    ledger(
        SpendCommand(
            command_id="spend-1",
            request_id="r",
            tenant_id=TENANT,
            customer=CUSTOMER,
            occurred_at=T0 + timedelta(days=1),
            rules=RULES,
            order_id="S-1",
            points=120,
            order_amount=Decimal(1000),
        )
    )
    assert ledger.state.balance() == 80
    ledger(
        RefundCommand(
            command_id="refund-1",
            request_id="r",
            tenant_id=TENANT,
            customer=CUSTOMER,
            occurred_at=T0 + timedelta(days=2),
            rules=RULES,
            order_id="B-0",
            refund_id="full",
        )
    )
    assert ledger.state.balance() == 30  # the refunded order's 50 points, from the shared lot
    assert sum(lot.remaining for lot in ledger.state.lots) == ledger.state.balance()
