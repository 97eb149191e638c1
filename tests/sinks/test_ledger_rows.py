"""sinks.ledger_rows: what one event writes to the read model, shared by the worker's sink and
the events rebuild."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson

from schemas.events import (
    BonusAwarded,
    BonusExpired,
    BonusSpent,
    CustomerRegistered,
    LotPoints,
    parse_event,
)
from schemas.messages import CustomerRef
from sinks.ledger_rows import (
    ENTRY_COLUMNS,
    merged_awards,
    merged_moves,
    newest_balances,
    rows_of,
)

T = "11111111-1111-4111-8111-111111111111"
C = "22222222-2222-4222-8222-222222222222"
AT = datetime(2026, 11, 27, 10, tzinfo=UTC)


def _common(event_id: str, seq: int, balance: int) -> dict:
    return {
        "event_id": event_id,
        "tenant_id": T,
        "customer": CustomerRef(id=C, email="a@example.com"),
        "occurred_at": AT + timedelta(seconds=seq),
        "seq": seq,
        "balance_after": balance,
        "lifetime_spend": "1500.50",
        "level": "silver",
    }


def award(event_id: str, seq: int, points: int, lot_id: str | None = None) -> BonusAwarded:
    return BonusAwarded(
        order_id=f"O-{seq}",
        amount="1000.25",
        percent="5",
        points=points,
        lot_id=lot_id,
        available_at=AT,
        expires_at=AT + timedelta(days=365),
        **_common(event_id, seq, 100),
    )


def _rows(event):
    raw = event.to_bytes()
    return rows_of(parse_event(raw), raw)


def test_an_award_is_an_entry_a_lot_and_a_balance():
    e = award("aaaaaaaa-0000-4000-8000-000000000001", 1, 50)
    r = _rows(e)
    entry = dict(zip(ENTRY_COLUMNS, r.entry, strict=True))
    assert entry["event_id"] == e.event_id and entry["tenant_id"] == T
    assert entry["customer_id"] == C and entry["type"] == "bonus_awarded"
    assert entry["order_id"] == "O-1" and entry["amount"] == Decimal("1000.25")
    assert entry["points"] == 50 and entry["delta"] == 50 and entry["balance_after"] == 100
    assert entry["expires_at"] == AT + timedelta(days=365)
    assert orjson.loads(entry["event"]) == orjson.loads(e.to_bytes())  # the record, whole
    assert entry["reason"] == "purchase O-1: 5% of 1000.25"
    assert r.award == (e.event_id, T, C, "O-1", 50, AT, AT + timedelta(days=365))
    assert r.moves == []
    assert r.balance == (T, C, 100, Decimal("1500.50"), "silver", 1)


def test_a_spend_moves_its_lots_down_and_creates_none():
    lot = "aaaaaaaa-0000-4000-8000-000000000001"
    spend = BonusSpent(
        order_id="S-1",
        points=30,
        lots=[LotPoints(lot_id=lot, points=20), LotPoints(lot_id="b" * 8 + lot[8:], points=10)],
        **_common("cccccccc-0000-4000-8000-000000000002", 2, 70),
    )
    r = _rows(spend)
    assert r.award is None and r.entry[11] == -30 and r.entry[5] == Decimal("0")
    assert r.moves == [(lot, -20), ("b" * 8 + lot[8:], -10)]


def test_expiry_and_events_without_points():
    lot = "aaaaaaaa-0000-4000-8000-000000000001"
    expired = BonusExpired(
        lot_id=lot, points=7, expired_at=AT, **_common("dddddddd-0000-4000-8000-000000000003", 3, 0)
    )
    assert _rows(expired).moves == [(lot, -7)] and _rows(expired).entry[11] == -7
    registered = CustomerRegistered(
        referral_code="ABC", **_common("eeeeeeee-0000-4000-8000-000000000004", 4, 0)
    )
    r = _rows(registered)
    assert (r.award, r.moves, r.entry[6], r.entry[11]) == (None, [], 0, 0)
    assert r.entry[12] == "registered"
    assert _rows(award("ffffffff-0000-4000-8000-000000000005", 5, 0)).award is None  # 0 points


def test_awards_sharing_a_lot_merge_first_one_naming_it():
    lot = "aaaaaaaa-0000-4000-8000-000000000001"
    first = _rows(award(lot, 1, 50))
    second = _rows(award("aaaaaaaa-0000-4000-8000-000000000009", 2, 20, lot_id=lot))
    merged = merged_awards([first, second])
    assert merged == [[lot, T, C, "O-1", 70, AT, AT + timedelta(days=365)]]


def test_moves_add_up_per_lot_and_the_newest_balance_wins():
    rows = [_rows(award(f"aaaaaaaa-0000-4000-8000-00000000000{i}", i, 10)) for i in (3, 1, 2)]
    assert newest_balances(rows) == [rows[0].balance]  # seq 3, whatever the order
    spend = BonusSpent(
        order_id="S",
        points=5,
        lots=[LotPoints(lot_id="aaaaaaaa-0000-4000-8000-000000000001", points=5)],
        **_common("cccccccc-0000-4000-8000-000000000002", 4, 25),
    )
    assert merged_moves([_rows(spend), _rows(spend)]) == {
        "aaaaaaaa-0000-4000-8000-000000000001": -10
    }
