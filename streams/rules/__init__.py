"""The pure core of the ledger: state in, events out. No I/O, no clock, no randomness.

One customer's ledger is a `CustomerState` (open lots, lifetime spend, level, referrer, and the
events of its last few commands) plus one `OrderState` per order it touched. `apply()` takes a
command with the states it needs and returns the new states, the events to emit and any command
for another customer (a referral award goes to the referrer's own key).

Rules of the game (DESIGN § Loyalty rules):
- every award is a lot: spendable from `available_at` (hold), gone at `expires_at` (TTL);
- before anything else a command expires the lots whose time has come (`bonus_expired`);
- one award per order, one spend per order, one reversal per refund id, whatever the retries;
- a spend takes the active lots that expire first and never drives a lot below zero;
- a refund reverses the order's award and returns the points spent on it, in proportion.

Where each part lives:
- `state`: the stored models (`CustomerState`, `OrderState`, `Lot`, `Taken`, `Remembered`);
- `arithmetic`: points from money (`award_points`, `share`, `money`);
- `builder`: the `Builder` every handler uses to move points and emit events, and `Result`;
- one module per action — `purchase`, `referral`, `register`, `spend`, `refund`, `expire` —
  each with its `order_key` and `handle`, registered in the one table `handlers.HANDLERS`;
- `dispatch`: `apply()`, which consults that table, and the replay memory (`remembered`).
"""

from streams.rules.arithmetic import award_points, money, share
from streams.rules.builder import Result
from streams.rules.dispatch import (
    REMEMBERED_PER_CUSTOMER,
    REMEMBERED_PER_ORDER,
    apply,
    order_key,
    remembered,
)
from streams.rules.state import CustomerState, Lot, OrderState, Remembered, Taken

_money = money  # the name callers knew before the rules became a package

__all__ = [
    "REMEMBERED_PER_CUSTOMER",
    "REMEMBERED_PER_ORDER",
    "CustomerState",
    "Lot",
    "OrderState",
    "Remembered",
    "Result",
    "Taken",
    "_money",
    "apply",
    "award_points",
    "money",
    "order_key",
    "remembered",
    "share",
]
