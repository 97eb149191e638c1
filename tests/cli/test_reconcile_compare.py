"""`kopilka reconcile` without services: reading changelog records, comparing, totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from kopilka.cli.reconcile import Balance, Drift, compare, engine_balances, summary
from schemas.rules.state import CustomerState, Lot

T1, T2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
NOW = datetime(2026, 11, 27, tzinfo=UTC)


def state(*remaining: int, seq: int = 1) -> str:
    lots = tuple(
        Lot(lot_id=f"l{i}", remaining=r, available_at=NOW, expires_at=NOW + timedelta(days=1))
        for i, r in enumerate(remaining)
    )
    return CustomerState(seq=seq, lots=lots).to_bytes().decode()


def faust(text: str | None) -> bytes | None:
    """How Faust writes a str key or value to a changelog: JSON-encoded."""
    return None if text is None else orjson.dumps(text)


def test_latest_customer_entry_wins_orders_are_ignored_tombstones_delete():
    records = [
        (faust(f"c|{T1}:a"), faust(state(100))),
        (faust(f"o|{T1}:a|ORDER-1"), faust('{"awarded": 100}')),
        (faust(f"c|{T1}:a"), faust(state(100, 50, seq=2))),
        (faust(f"c|{T2}:b"), faust(state(7))),
        (faust(f"c|{T2}:gone"), faust(state(9))),
        (faust(f"c|{T2}:gone"), None),
        (None, faust(state(1))),
    ]
    assert engine_balances(records) == {(T1, "a"): Balance(150, 2), (T2, "b"): Balance(7, 1)}
    assert engine_balances(records, T2) == {(T2, "b"): Balance(7, 1)}
    # raw (not JSON-encoded) text is read too
    assert engine_balances([(f"c|{T1}:a".encode(), state(3).encode())]) == {
        (T1, "a"): Balance(3, 1)
    }


def test_drift_is_any_difference_and_a_missing_side_counts_as_zero():
    engine = {(T1, "a"): Balance(150, 2), (T1, "b"): Balance(0, 1), (T1, "c"): Balance(30, 3)}
    postgres = {(T1, "a"): Balance(150, 2), (T1, "c"): Balance(20, 2), (T2, "x"): Balance(5, 1)}
    drifts = compare(engine, postgres)
    assert drifts == [
        Drift(T1, "c", 30, 20, -10, 3, 2),
        Drift(T2, "x", None, 5, 5, None, 1),
    ]
    result = summary(engine, postgres, drifts)
    assert (result["customers"], result["drifting"], result["drift_points"]) == (4, 2, 15)
    assert (result["engine_total"], result["postgres_total"]) == (180, 175)
    assert result["tenants"][T1] == {"engine_total": 180, "postgres_total": 170, "drifting": 1}
    assert compare(engine, engine) == []
