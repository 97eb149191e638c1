"""The events rebuild's pure parts: its one-pass event reader (sinks.ledger_rows.read_event)
says what parse_event says (the sink's reader), and a batch's rows (kopilka.cli.events_rebuild) are
what the sink would write for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import orjson
import pytest

from kopilka.cli.events_rebuild import Rebuild, _rows
from schemas.events import (
    EVENT_TYPES,
    BonusAwarded,
    BonusExpired,
    BonusReturned,
    BonusReversed,
    BonusSpent,
    CustomerRegistered,
    LevelChanged,
    LotPoints,
    ReferralAwarded,
    SpendRejected,
    parse_event,
)
from schemas.messages import CustomerRef
from sinks.ledger_rows import read_event

T = "11111111-1111-4111-8111-111111111111"
C = "22222222-2222-4222-8222-222222222222"
LOT = "33333333-3333-4333-8333-333333333333"
AT = datetime(2026, 11, 27, 10, tzinfo=UTC)


def _common(n: int, balance: int = 50) -> dict:
    return {
        "event_id": f"00000000-0000-4000-8000-{n:012d}",
        "tenant_id": T,
        "customer": CustomerRef(id=C, email="a@example.com"),
        "occurred_at": AT + timedelta(seconds=n),
        "seq": n,
        "balance_after": balance,
        "lifetime_spend": "1000.50",
    }


def one_of_each() -> list:
    lots = [LotPoints(lot_id=LOT, points=10)]
    award = {"amount": "1000.50", "percent": "5", "points": 50, "available_at": AT}
    return [
        BonusAwarded(**_common(1), order_id="O-1", lot_id=LOT, expires_at=AT, **award),
        ReferralAwarded(
            **_common(2), order_id="O-2", referee_id=C, expires_at=AT + timedelta(days=1), **award
        ),
        LevelChanged(**_common(3), level="gold", previous_level=None, direction="up"),
        CustomerRegistered(**_common(4), referral_code="ABC", referrer_id=C),
        BonusSpent(**_common(5, 40), order_id="S-1", points=10, order_amount="99", lots=lots),
        SpendRejected(
            **_common(6, 40),
            order_id="S-2",
            points=500,
            reason="insufficient_balance",
            detail="only 40 points",
            active_balance=40,
        ),
        BonusExpired(**_common(7, 30), lot_id=LOT, points=10, expired_at=AT),
        BonusReversed(
            **_common(8, 20),
            order_id="O-1",
            refund_id="R-1",
            refund_amount="100",
            points=10,
            unrecovered=0,
            lots=lots,
        ),
        BonusReturned(**_common(9, 30), order_id="S-1", refund_id="R-1", points=10, lots=lots),
    ]


def test_every_event_type_reads_as_parse_event_reads_it():
    events = one_of_each()
    assert {e.type for e in events} == set(EVENT_TYPES)
    for e in events:
        raw = e.to_bytes()
        read = read_event(raw)
        assert type(read) is type(parse_event(raw)) and read == parse_event(raw)


@pytest.mark.parametrize(
    "change",
    [
        {"type": "bonus_invented"},
        {"points": -5},
        {"lifetime_spend": "1e3"},
        {"unexpected": 1},
        {"occurred_at": "yesterday"},
        {"customer": None},
    ],
)
def test_a_record_parse_event_refuses_is_refused_with_its_error(change):
    raw = orjson.dumps({**orjson.loads(one_of_each()[0].to_bytes()), **change})
    with pytest.raises(Exception) as expected:
        parse_event(raw)
    with pytest.raises(type(expected.value)):
        read_event(raw)


def test_a_batch_gives_each_entry_once_each_lots_net_move_and_the_newest_balance():
    events = one_of_each()
    records = [
        SimpleNamespace(value=e.to_bytes(), offset=i, partition=0) for i, e in enumerate(events)
    ]
    records.append(SimpleNamespace(value=b"{not json", offset=9, partition=0))
    records.append(SimpleNamespace(value=events[0].to_bytes(), offset=10, partition=0))
    job, seen = Rebuild(), set()
    entries, awards, moves, balances = _rows(job, records, seen)
    assert job.counts == {"read": 11, "copied": 0, "duplicates": 1, "unreadable": 1}
    assert len(entries) == 9 and len(seen) == 9
    assert [a[0] for a in awards] == [0, 1]  # the record's offset, then the award's columns
    # spent 10, expired 10, reversed 10, returned 10: one row, the net move
    assert moves == [(LOT, -20)]
    ((offset, tenant, customer, balance, _, _, seq),) = balances
    assert (offset, tenant, customer, balance, seq) == (8, T, C, 30, 9)
