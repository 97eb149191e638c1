"""The pure ledger core: arithmetic, each action, and the invariants under any sequence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kopilka.core.ids import derived_id
from schemas.commands import (
    ExpireCommand,
    PurchaseCommand,
    ReferralCommand,
    RefundCommand,
    RegisterCommand,
    SpendCommand,
)
from schemas.events import parse_event
from schemas.messages import Command, CustomerRef
from schemas.rules.arithmetic import award_points, share
from schemas.rules.dispatch import REMEMBERED_PER_ORDER, apply, order_key, remembered
from schemas.rules.state import CustomerState, OrderState
from schemas.tenant_rules import Level, TenantRules

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TENANT = "11111111-1111-1111-1111-111111111111"
CUSTOMER = CustomerRef(id="22222222-2222-2222-2222-222222222222", email="a@example.com")
RULES = TenantRules(
    base_percent=Decimal(5),
    levels=(
        Level(name="silver", min_lifetime_spend=Decimal(10_000), bonus_percent=Decimal(2)),
        Level(name="gold", min_lifetime_spend=Decimal(50_000), bonus_percent=Decimal(5)),
    ),
    referral_percent=Decimal(3),
    bonus_ttl_days=30,
    max_spend_percent=Decimal(50),
)


class Ledger:
    """One customer's ledger, driven like the agent drives it (state + order table)."""

    def __init__(self) -> None:
        self.state = CustomerState()
        self.orders: dict[str, OrderState] = {}
        self.log: list[tuple[Command, list[str]]] = []

    def __call__(self, cmd: Command):
        result = apply(self.state, self.orders, cmd)
        self.state = result.state
        key = order_key(cmd)
        if key is not None and result.order is not None:
            self.orders[key] = result.order
        self.log.append((cmd, result.events))
        return result

    def events(self, result) -> list:
        return [parse_event(e.encode()) for e in result.events]


_n = 0


def _id() -> str:
    global _n
    _n += 1
    return f"cmd-{_n}"


def common(at: datetime = T0, command_id: str | None = None, rules: TenantRules = RULES) -> dict:
    return {
        "command_id": command_id or _id(),
        "request_id": "req-1",
        "tenant_id": TENANT,
        "customer": CUSTOMER,
        "occurred_at": at,
        "rules": rules,
    }


def purchase(order: str, amount, **kw) -> PurchaseCommand:
    return PurchaseCommand(order_id=order, amount=Decimal(amount), **common(**kw))


def spend(order: str, points: int, order_amount=None, **kw) -> SpendCommand:
    amount = None if order_amount is None else Decimal(order_amount)
    return SpendCommand(order_id=order, points=points, order_amount=amount, **common(**kw))


def refund(order: str, refund_id: str, amount=None, **kw) -> RefundCommand:
    amount = None if amount is None else Decimal(amount)
    return RefundCommand(order_id=order, refund_id=refund_id, amount=amount, **common(**kw))


def expire(at: datetime) -> ExpireCommand:
    fields = common(at=at)
    del fields["rules"]
    return ExpireCommand(**fields)


# --- arithmetic ----------------------------------------------------------------------------


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
        # 24 significant digits times a 9-digit percent: past the default 28-digit context
        ("999999999999.999999999999", "12.3456789", "floor", 123456788999),
    ],
)
def test_award_points(amount, percent, rounding, points):
    assert award_points(Decimal(amount), Decimal(percent), rounding) == points


def test_award_points_refuses_negative_inputs():
    with pytest.raises(ValueError):
        award_points(Decimal("-1"), Decimal(5))


def test_share_is_exact_at_the_whole_and_never_above_it():
    assert share(101, Decimal(1), Decimal(2)) == 51  # 50.5 rounds half up
    assert share(101, Decimal(2), Decimal(2)) == 101
    assert share(7, Decimal(5), Decimal(0)) == 7


# --- purchases and levels ------------------------------------------------------------------


def test_purchase_awards_a_lot_and_the_held_level_applies_before_the_level_up():
    ledger = Ledger()
    first = ledger.events(ledger(purchase("O-1", "9000")))
    assert [e.type for e in first] == ["bonus_awarded"]
    assert (first[0].points, first[0].percent, first[0].level) == (450, "5", None)
    assert first[0].expires_at == T0 + timedelta(days=30)

    second = ledger.events(ledger(purchase("O-2", "2000")))  # crosses 10,000: silver after
    assert [e.type for e in second] == ["bonus_awarded", "level_changed"]
    assert (second[0].points, second[0].percent) == (100, "5")  # the level held before
    assert (second[1].level, second[1].previous_level, second[1].direction) == (
        "silver",
        None,
        "up",
    )
    third = ledger.events(ledger(purchase("O-3", "1000")))
    assert (third[0].points, third[0].percent) == (70, "7")  # 5 % base + 2 % silver
    assert ledger.state.balance() == 620 and third[0].balance_after == 620


def test_same_order_from_another_delivery_is_a_duplicate_and_a_replay_re_emits():
    ledger = Ledger()
    cmd = purchase("O-1", "5000")
    first = ledger(cmd)
    again = ledger(purchase("O-1", "5000"))
    assert again.status == "duplicate" and again.events == []
    replay = ledger(cmd)
    assert replay.status == "applied" and replay.events == first.events
    # the ledger agent writes a replay's entries again (the changelog may never have had them)
    assert replay.replayed and not first.replayed and not again.replayed


def test_hold_makes_the_lot_pending_until_the_hold_is_over():
    ledger = Ledger()
    held = RULES.model_copy(update={"hold_days": 14, "max_spend_percent": Decimal(100)})
    ledger(purchase("O-1", "10000", rules=held))
    refused = ledger.events(ledger(spend("S-1", 100, rules=held, at=T0 + timedelta(days=13))))
    assert refused[0].type == "spend_rejected" and refused[0].reason == "insufficient_balance"
    assert "500 more pending" in refused[0].detail
    done = ledger.events(ledger(spend("S-1", 100, rules=held, at=T0 + timedelta(days=14))))
    assert done[0].type == "bonus_spent" and done[0].balance_after == 400


# --- referrals and registration ------------------------------------------------------------


def test_registered_referee_purchases_make_referral_commands_for_the_referrer():
    ledger = Ledger()
    registered = ledger.events(
        ledger(
            RegisterCommand(
                referral_code="ABCD2345",
                referrer_id="33333333-3333-3333-3333-333333333333",
                **common(),
            )
        )
    )
    assert registered[0].type == "customer_registered"
    first = ledger(purchase("O-1", "1000"))
    [referral] = first.followups
    assert isinstance(referral, ReferralCommand)
    assert referral.customer.id == "33333333-3333-3333-3333-333333333333"
    assert ledger(purchase("O-2", "1000")).followups == []  # first purchase only

    referrer = Ledger()
    [award] = referrer.events(referrer(referral))
    assert (award.type, award.points, award.referee_id) == ("referral_awarded", 30, CUSTOMER.id)
    assert referrer(referral.model_copy(update={"command_id": "other"})).status == "duplicate"


# --- spending ------------------------------------------------------------------------------


def test_spend_takes_the_lots_that_expire_first_and_checks_the_max_percent():
    ledger = Ledger()
    ledger(purchase("O-1", "2000", at=T0))  # 100, expires T0+30
    ledger(purchase("O-2", "2000", at=T0 + timedelta(days=1)))  # 100, expires T0+31
    over = ledger.events(ledger(spend("S-1", 150, order_amount="200", at=T0 + timedelta(days=2))))
    assert over[0].reason == "over_max_percent" and over[0].max_points == 100
    missing = ledger.events(ledger(spend("S-1", 150, at=T0 + timedelta(days=2))))
    assert missing[0].reason == "order_amount_required"
    ok = ledger.events(ledger(spend("S-1", 150, order_amount="1000", at=T0 + timedelta(days=2))))
    assert ok[0].type == "bonus_spent"
    assert [(lot.points) for lot in ok[0].lots] == [100, 50]
    assert [lot.lot_id for lot in ok[0].lots] == [
        derived_id(TENANT, "O-1", "bonus_awarded"),
        derived_id(TENANT, "O-2", "bonus_awarded"),
    ]
    assert ledger.state.balance() == 50


def test_refused_spend_is_retried_with_a_new_delivery_and_succeeds_after_a_purchase():
    ledger = Ledger()
    refused = ledger(spend("S-1", 100, order_amount="1000"))
    assert refused.status == "rejected"
    ledger(purchase("O-1", "4000"))
    assert ledger(spend("S-1", 100, order_amount="1000")).status == "applied"
    assert ledger(spend("S-1", 100, order_amount="1000")).status == "duplicate"


# --- refunds -------------------------------------------------------------------------------


def test_partial_then_full_refund_reverses_the_award_in_proportion():
    ledger = Ledger()
    ledger(purchase("O-1", "3000"))  # 150
    part = ledger.events(ledger(refund("O-1", "r1", "1000")))
    assert [e.type for e in part] == ["bonus_reversed"]
    assert (part[0].points, part[0].unrecovered, part[0].balance_after) == (50, 0, 100)
    assert part[0].lifetime_spend == "2000"
    rest = ledger.events(ledger(refund("O-1", "r2")))
    assert (rest[0].points, rest[0].balance_after, rest[0].refund_amount) == (100, 0, "2000")
    assert ledger(refund("O-1", "r3", "1")).status == "rejected"  # nothing left to refund


def test_refund_after_the_award_was_spent_takes_other_points_then_forgives_the_rest():
    ledger = Ledger()
    ledger(purchase("O-1", "2000"))  # 100
    ledger(purchase("O-2", "600"))  # 30
    ledger(spend("S-1", 100, order_amount="1000"))  # takes O-1's lot (expires first... same day)
    [reversed_] = ledger.events(ledger(refund("O-1", "r1")))
    assert (reversed_.points, reversed_.unrecovered, reversed_.balance_after) == (30, 70, 0)


def test_refund_of_an_order_paid_with_points_returns_them_into_their_lots():
    ledger = Ledger()
    ledger(purchase("O-1", "4000"))  # 200
    ledger(spend("S-1", 120, order_amount="1000"))
    part = ledger.events(ledger(refund("S-1", "r1", "500")))
    assert [e.type for e in part] == ["bonus_returned"]
    assert (part[0].points, part[0].balance_after) == (60, 140)
    # the lot expired since: the rest comes back and expires again at once
    late = ledger.events(ledger(refund("S-1", "r2", at=T0 + timedelta(days=40))))
    assert [e.type for e in late] == ["bonus_expired", "bonus_returned", "bonus_expired"]
    assert late[-1].balance_after == 0
    assert late[0].event_id != late[2].event_id  # one lot, two expiries: two events


def test_refund_of_an_unknown_order_is_rejected():
    assert Ledger()(refund("NOPE", "r1")).status == "rejected"


# --- expiry --------------------------------------------------------------------------------


def test_expiry_emits_bonus_expired_once_and_the_balance_drops():
    ledger = Ledger()
    ledger(purchase("O-1", "2000"))
    out = ledger.events(ledger(expire(T0 + timedelta(days=30))))
    assert [(e.type, e.points, e.balance_after) for e in out] == [("bonus_expired", 100, 0)]
    assert ledger(expire(T0 + timedelta(days=31))).status == "duplicate"


def test_state_survives_its_serialised_form():
    ledger = Ledger()
    ledger(purchase("O-1", "1234.56"))
    ledger(spend("S-1", 10, order_amount="100"))
    assert CustomerState.from_bytes(ledger.state.to_bytes()) == ledger.state
    assert OrderState.from_bytes(ledger.orders["S-1"].to_bytes()) == ledger.orders["S-1"]


# --- invariants under any sequence ---------------------------------------------------------

orders = st.integers(0, 5).map(lambda n: f"O-{n}")
steps = st.lists(
    st.one_of(
        st.tuples(st.just("purchase"), orders, st.integers(0, 50_000)),
        st.tuples(st.just("spend"), orders, st.integers(1, 3_000), st.integers(0, 10_000)),
        st.tuples(st.just("refund"), orders, st.integers(0, 3), st.integers(0, 40_000)),
        st.tuples(st.just("wait"), st.integers(0, 20)),
        st.tuples(st.just("replay"), st.integers(0, 1000)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps, st.sampled_from([Decimal(30), Decimal(100)]), st.integers(0, 3))
def test_invariants_hold_for_any_sequence_of_actions_and_replays(sequence, max_percent, hold):
    rules = RULES.model_copy(update={"max_spend_percent": max_percent, "hold_days": hold})
    ledger = Ledger()
    at = T0
    for step in sequence:
        kind = step[0]
        if kind == "wait":
            at += timedelta(days=step[1])
            cmd = expire(at)
        elif kind == "replay":
            if not ledger.log:
                continue
            cmd, emitted = ledger.log[step[1] % len(ledger.log)]
            before = ledger.state
            result = apply(ledger.state, ledger.orders, cmd)
            # the same input again changes nothing; the most recent re-emit what they emitted
            assert result.state is before
            key = order_key(cmd)
            order = ledger.orders.get(key) if key is not None else None
            if remembered(before, order, cmd.command_id) is not None:
                assert result.events == emitted
            continue
        elif kind == "purchase":
            cmd = purchase(step[1], step[2], at=at, rules=rules)
        elif kind == "spend":
            cmd = spend(step[1], step[2], step[3], at=at, rules=rules)
        else:
            cmd = refund(step[1], f"r{step[2]}", step[3] or None, at=at, rules=rules)
        active_before = sum(lot.remaining for lot in ledger.state.lots if lot.active(at))
        result = ledger(cmd)
        events = ledger.events(result)
        for event in events:
            if event.type == "bonus_spent":
                assert event.points <= active_before  # never beyond the active balance
                limit = award_points(cmd.order_amount, max_percent, "floor")
                assert event.points <= limit  # never beyond the max % of the order
        if events:
            assert events[-1].balance_after == ledger.state.balance()
            assert [e.seq for e in events] == list(
                range(events[0].seq, events[0].seq + len(events))
            )
        assert all(lot.remaining > 0 for lot in ledger.state.lots)  # no lot at or below zero
        assert ledger.state.balance() >= 0

    # replaying any prefix of the inputs, in order, changes nothing and emits nothing new
    # (within the remembered window, which is all a restart ever replays)
    per_order: dict[str, int] = {}
    for cmd, _ in ledger.log:
        key = order_key(cmd)
        per_order[key] = per_order.get(key, 0) + 1
    if all(n <= REMEMBERED_PER_ORDER for k, n in per_order.items() if k is not None):
        final = ledger.state
        for cmd, emitted in ledger.log[: len(ledger.log) // 2 + 1]:
            result = apply(final, ledger.orders, cmd)
            assert result.state is final
            assert result.events in (emitted, [])

    # every event has its own id (a lot that expires, comes back with a refund and expires
    # again expires twice, under two ids)
    ids = [orjson.loads(raw)["event_id"] for _, emitted in ledger.log for raw in emitted]
    assert len(ids) == len(set(ids))

    # balance = Σ of the lots = Σ of every movement the events report
    moved = 0
    for _, emitted in ledger.log:
        for raw in emitted:
            e = orjson.loads(raw)
            sign = {"bonus_awarded": 1, "bonus_returned": 1}.get(e["type"], -1)
            if e["type"] in ("bonus_awarded", "bonus_returned", "bonus_spent", "bonus_expired"):
                moved += sign * e["points"]
            elif e["type"] == "bonus_reversed":
                moved -= e["points"]
    assert ledger.state.balance() == sum(lot.remaining for lot in ledger.state.lots) == moved


def test_a_lost_order_write_is_repaired_from_the_customer_entry_on_replay():
    """kill -9 after the customer entry was written but before the order entry was."""
    ledger = Ledger()
    cmd = purchase("O-1", "2000")
    first = ledger(cmd)
    lost = {k: v for k, v in ledger.orders.items() if k != "O-1"}  # the order write never landed
    replay = apply(ledger.state, lost, cmd)
    assert replay.state is ledger.state  # nothing applied twice
    assert replay.events == first.events and replay.order == ledger.orders["O-1"]
    assert ledger.state.balance() == 100
