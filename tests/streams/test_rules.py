"""The pure ledger core: arithmetic, once-per-order, and replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import BonusAwarded
from schemas.messages import CustomerRef, PurchaseCommand, TenantRules
from streams.rules import CustomerLedger, apply_purchase, award_points

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def command(
    order_id: str,
    amount: str | Decimal,
    *,
    command_id: str | None = None,
    percent: str = "5",
    rounding: str = "floor",
    ttl: int = 365,
    at: datetime = T0,
) -> PurchaseCommand:
    return PurchaseCommand(
        command_id=command_id or f"cmd-{order_id}",
        source_event_id="raw-1",
        tenant_id="11111111-1111-1111-1111-111111111111",
        customer=CustomerRef(id="22222222-2222-2222-2222-222222222222", email="a@example.com"),
        order_id=order_id,
        amount=Decimal(amount),
        occurred_at=at,
        rules=TenantRules(base_percent=Decimal(percent), bonus_ttl_days=ttl, rounding=rounding),
    )


@pytest.mark.parametrize(
    ("amount", "percent", "rounding", "points"),
    [
        ("24450.50", "5", "floor", 1222),  # 1222.525
        ("24450.50", "5", "half_up", 1223),
        ("0", "5", "floor", 0),
        ("19.99", "5", "floor", 0),  # 0.9995: never rounds up by accident
        ("20", "5", "floor", 1),
        ("999999999999.99", "5", "floor", 49999999999),  # exact, no float on the way
        ("5000", "3.5", "floor", 175),
        ("0.1", "100", "floor", 0),
        ("10", "0", "floor", 0),
    ],
)
def test_award_points(amount, percent, rounding, points):
    assert award_points(Decimal(amount), Decimal(percent), rounding) == points


def test_award_points_refuses_negative_inputs():
    with pytest.raises(ValueError):
        award_points(Decimal("-1"), Decimal(5))


def test_purchase_awards_a_lot_that_expires_after_the_ttl():
    state, [event] = apply_purchase(CustomerLedger(), command("O-1", "5000", ttl=30))
    assert isinstance(event, BonusAwarded)
    assert (event.points, event.balance_after, event.seq) == (250, 250, 1)
    assert event.expires_at == T0 + timedelta(days=30)
    assert event.amount == "5000" and event.lifetime_spend == "5000"
    assert state.balance(T0) == 250
    assert state.balance(T0 + timedelta(days=30)) == 0


def test_same_order_again_from_a_new_delivery_emits_nothing():
    state, _ = apply_purchase(CustomerLedger(), command("O-1", "5000"))
    again, out = apply_purchase(state, command("O-1", "5000", command_id="another-delivery"))
    assert out == [] and again is state


def test_replay_of_the_same_input_re_emits_the_same_event():
    state, [event] = apply_purchase(CustomerLedger(), command("O-1", "5000"))
    again, out = apply_purchase(state, command("O-1", "5000"))
    assert again is state
    assert out == [event.model_dump_json()]


def test_event_ids_depend_on_tenant_and_order_only():
    _, [a] = apply_purchase(CustomerLedger(), command("O-1", "100"))
    _, [b] = apply_purchase(CustomerLedger(), command("O-1", "999", command_id="x"))
    _, [c] = apply_purchase(CustomerLedger(), command("O-2", "100"))
    assert a.event_id == b.event_id != c.event_id


def test_state_survives_its_serialised_form():
    state, _ = apply_purchase(CustomerLedger(), command("O-1", "1234.56"))
    assert CustomerLedger.from_bytes(state.to_bytes()) == state


purchases = st.lists(
    st.tuples(
        st.integers(0, 15).map(lambda n: f"O-{n}"),
        st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False),
        st.integers(0, 2),  # which delivery of the order this is
    ),
    max_size=40,
)


@given(purchases)
def test_ledger_invariants_hold_for_any_sequence_with_retries(sequence):
    state = CustomerLedger()
    first_amount: dict[str, Decimal] = {}
    for order_id, amount, delivery in sequence:
        before = state
        state, out = apply_purchase(
            state, command(order_id, amount, command_id=f"{order_id}/{delivery}")
        )
        if order_id in first_amount:
            assert state is before  # one award per order, whatever arrives later
        else:
            first_amount[order_id] = amount
            assert len(out) == 1
        # replaying the input just applied changes nothing
        assert (
            apply_purchase(state, command(order_id, amount, command_id=f"{order_id}/{delivery}"))[0]
            is state
        )
    assert state.seq == len(first_amount)
    assert state.lifetime_spend == sum(first_amount.values(), Decimal(0))
    assert state.balance(T0) == sum(lot.remaining for lot in state.lots)
    assert state.balance(T0) == sum(award_points(a, Decimal(5)) for a in first_amount.values())
    assert all(lot.remaining >= 0 for lot in state.lots)
