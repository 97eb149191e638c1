"""Schema-valid loyalty events for the replay and sink benchmarks, without running the engine.

Per customer, in ledger order: an award (its own lot), a spend from that lot, and for every
third customer a partial refund (reversal + return) and a referral award to the previous
customer, so every row kind the read model has is exercised. Returns (key, value) records.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from schemas.events import (
    BonusAwarded,
    BonusReturned,
    BonusReversed,
    BonusSpent,
    LotPoints,
    ReferralAwarded,
)
from schemas.messages import CustomerRef

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def records(n: int, tenant_id: str | None = None) -> list[tuple[bytes, bytes]]:
    tenant = tenant_id or str(uuid.uuid4())
    out: list[tuple[bytes, bytes]] = []
    previous: str | None = None
    i = 0
    while len(out) < n:
        i += 1
        cid = str(uuid.uuid4())
        who = CustomerRef(id=cid, email=f"c{i}@example.com")
        at = T0 + timedelta(seconds=i)
        common = {"tenant_id": tenant, "customer": who, "occurred_at": at}
        award = BonusAwarded(
            event_id=str(uuid.uuid4()),
            seq=1,
            balance_after=50,
            lifetime_spend="1000",
            order_id=f"O-{i}",
            amount="1000",
            percent="5",
            points=50,
            available_at=at,
            expires_at=at + timedelta(days=365),
            **common,
        )
        lot = award.event_id
        chain = [
            award,
            BonusSpent(
                event_id=str(uuid.uuid4()),
                seq=2,
                balance_after=30,
                lifetime_spend="1000",
                order_id=f"S-{i}",
                points=20,
                lots=[LotPoints(lot_id=lot, points=20)],
                **common,
            ),
        ]
        if i % 3 == 0:
            chain += [
                BonusReversed(
                    event_id=str(uuid.uuid4()),
                    seq=3,
                    balance_after=5,
                    lifetime_spend="500",
                    order_id=f"O-{i}",
                    refund_id=f"R-{i}",
                    refund_amount="500",
                    points=25,
                    unrecovered=0,
                    lots=[LotPoints(lot_id=lot, points=25)],
                    **common,
                ),
                BonusReturned(
                    event_id=str(uuid.uuid4()),
                    seq=4,
                    balance_after=15,
                    lifetime_spend="500",
                    order_id=f"S-{i}",
                    refund_id=f"R-{i}",
                    points=10,
                    lots=[LotPoints(lot_id=lot, points=10)],
                    **common,
                ),
            ]
        for e in chain:
            out.append((f"{tenant}:{cid}".encode(), e.to_bytes()))
        if i % 3 == 0 and previous is not None:
            ref = ReferralAwarded(
                event_id=str(uuid.uuid4()),
                tenant_id=tenant,
                customer=CustomerRef(id=previous),
                occurred_at=at,
                seq=100 + i,
                balance_after=80,
                lifetime_spend="1000",
                order_id=f"O-{i}",
                referee_id=cid,
                amount="1000",
                percent="3",
                points=30,
                available_at=at,
                expires_at=at + timedelta(days=365),
            )
            out.append((f"{tenant}:{previous}".encode(), ref.to_bytes()))
        previous = cid
    return out[:n]
