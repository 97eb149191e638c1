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
- each action's own rules are in its module of schemas.actions (`order_key`, `handle`),
  registered in that package's one table;
- `dispatch`: `apply()`, which finds the command's rules there, and the replay memory
  (`remembered`).

Import the modules themselves (`from schemas.rules.dispatch import apply`): this package
imports nothing, because the actions it serves import its `builder` and `state`.
"""
