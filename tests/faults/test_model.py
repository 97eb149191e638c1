"""The fault checker's oracle (model.py) on its own: a follow-up command is applied where it
landed on loyalty.commands, the customer's own commands in the order the shop sent them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from model import expected

from kopilka.core.ids import derived_id
from schemas.messages import RawEnvelope
from schemas.tenant_rules import TenantRules

TENANT = "11111111-1111-1111-1111-111111111111"
RULES = TenantRules(base_percent=Decimal(5), referral_percent=Decimal(3))
IDS = {
    "r@example.com": "22222222-2222-2222-2222-222222222222",
    "e@example.com": "33333333-3333-3333-3333-333333333333",
}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _env(n: int, action: str, **payload) -> RawEnvelope:
    body = json.dumps({"action": action, "payload": payload}).encode()
    return RawEnvelope.wrap(
        body,
        event_id=f"req-{n}",
        tenant_id=TENANT,
        received_at=T0 + timedelta(seconds=n),
        content_type="application/json",
    )


# the referrer earns 50; the referee's first purchase earns the referrer 300 more (a follow-up
# command on the referrer's key); the referrer then spends 200
STORED = [
    _env(1, "purchase", email="r@example.com", orderId="R1", amount="1000.00"),
    _env(2, "register_user", email="e@example.com", referrerEmail="r@example.com"),
    _env(3, "purchase", email="e@example.com", orderId="E1", amount="10000.00"),
    _env(4, "spend_bonuses", email="r@example.com", orderId="S1", points=200),
]
AWARD = derived_id(derived_id("req-3", 0), "referral")  # the referee's purchase's follow-up
OWN = {  # the referrer's own commands
    derived_id("req-1", 0): (7, 0, 0),
    derived_id("req-4", 0): (7, 1, 0),
}


def _referrer(positions=None):
    return expected(TENANT, RULES, IDS, STORED, positions).states[IDS["r@example.com"]]


def test_a_follow_up_that_landed_before_the_spend_pays_for_it():
    assert _referrer().balance() == 150  # applied at once: 50 + 300 - 200
    assert _referrer({**OWN, AWARD: (7, 1, 0), derived_id("req-4", 0): (7, 2, 0)}).balance() == 150
    # a batch record (streams.normalize): the spend was its second command, after the award
    assert _referrer({**OWN, AWARD: (7, 1, 0), derived_id("req-4", 0): (7, 1, 1)}).balance() == 150


def test_a_follow_up_that_landed_after_the_spend_comes_too_late_for_it():
    late = _referrer({**OWN, AWARD: (7, 2, 0)})
    assert _referrer({**OWN, derived_id("req-4", 0): (7, 1, 0), AWARD: (7, 1, 1)}).balance() == 350
    assert late.balance() == 350  # the spend was refused (50 < 200), the award came after
