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

Replays: the same command (same `command_id`) re-emits the very events it emitted the first time
(kept for the last `REMEMBERED_COMMANDS` commands), so a crash between "state saved" and "events
sent" loses nothing; a *different* command for something already done (a shop's retry) emits
nothing and reports `duplicate`.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kopilka.core.ids import derived_id
from schemas.events import (
    BonusAwarded,
    BonusExpired,
    BonusReturned,
    BonusReversed,
    BonusSpent,
    CustomerRegistered,
    Event,
    LevelChanged,
    LotPoints,
    ReferralAwarded,
    SpendRejected,
)
from schemas.frozen_copy import replaced
from schemas.messages import (
    Command,
    CustomerRef,
    ExpireCommand,
    PurchaseCommand,
    ReferralCommand,
    RefundCommand,
    RegisterCommand,
    SpendCommand,
    parse_command,
)
from schemas.tenant_rules import TenantRules

# How many commands' events are kept for exact re-emission: per order (purchase, spend, refunds,
# retried refused spends) and per customer for the rest (registration, expiry sweeps). A replay
# only ever concerns commands not yet committed, i.e. the last few.
REMEMBERED_PER_ORDER = 16
REMEMBERED_PER_CUSTOMER = 8
_ROUNDING = {"floor": ROUND_FLOOR, "half_up": ROUND_HALF_UP}
_HUNDRED = Decimal(100)
# Amounts have up to 12 integer and 12 fraction digits, percents up to 9 digits: their product
# needs ~45 significant digits, well past the default context's 28. 80 leaves room for sums.
_EXACT = decimal.Context(prec=80, rounding=ROUND_HALF_UP)


def award_points(amount: Decimal, percent: Decimal, rounding: str = "floor") -> int:
    """round(amount × percent / 100) to whole points with the tenant's rounding mode."""
    if amount < 0 or percent < 0:
        raise ValueError("amount and percent must not be negative")
    exact = _EXACT.divide(_EXACT.multiply(amount, percent), _HUNDRED)
    return int(exact.to_integral_value(rounding=_ROUNDING[rounding], context=_EXACT))


def share(points: int, part: Decimal, whole: Decimal) -> int:
    """round_half_up(points × part / whole), exact at part == whole, never above `points`."""
    if whole <= 0 or part >= whole:
        return points
    exact = _EXACT.divide(_EXACT.multiply(Decimal(points), part), whole)
    return min(points, int(exact.to_integral_value(rounding=ROUND_HALF_UP, context=_EXACT)))


def _money(value: Decimal) -> str:
    """A plain decimal string (never exponent notation) for the public contract."""
    text = str(value)  # the same text as format(value, "f") unless it has an exponent
    return format(value, "f") if "E" in text else text


# --- state ---------------------------------------------------------------------------------


class Lot(BaseModel):
    model_config = ConfigDict(frozen=True)

    lot_id: str
    remaining: int
    available_at: datetime
    expires_at: datetime

    def active(self, at: datetime) -> bool:
        return self.available_at <= at < self.expires_at


class Remembered(BaseModel):
    model_config = ConfigDict(frozen=True)

    command_id: str
    status: str
    events: tuple[str, ...]
    followups: tuple[str, ...] = ()
    reason: str | None = None


class CustomerState(BaseModel):
    """The per-customer table entry. Only open lots are kept, so it stays small."""

    model_config = ConfigDict(frozen=True)

    seq: int = 0
    lifetime_spend: Decimal = Decimal(0)
    level: str | None = None
    purchases: int = 0
    registered: bool = False
    referral_code: str | None = None
    referrer_id: str | None = None
    lots: tuple[Lot, ...] = ()
    recent: tuple[Remembered, ...] = ()
    # The last command applied and the order entry it wrote. The customer entry is written
    # first: if a crash loses the order entry's write, the replay restores it from here.
    last_command: str | None = None
    last_order_key: str | None = None
    last_order: OrderState | None = None

    def balance(self) -> int:
        return sum(lot.remaining for lot in self.lots)

    def active_balance(self, at: datetime) -> int:
        return sum(lot.remaining for lot in self.lots if lot.active(at))

    def to_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)  # model_dump_json's bytes

    @classmethod
    def from_bytes(cls, data: bytes | None) -> CustomerState:
        return cls() if data is None else cls.model_validate_json(data)


class Taken(BaseModel):
    """Points a spend took from one lot, with the lot's times, to give them back on a refund."""

    model_config = ConfigDict(frozen=True)

    lot_id: str
    points: int
    available_at: datetime
    expires_at: datetime


class OrderState(BaseModel):
    """What one customer's ledger knows about one order (or, for the referrer, one referral)."""

    model_config = ConfigDict(frozen=True)

    purchase_command: str | None = None
    amount: Decimal | None = None
    award_lot: str | None = None
    awarded: int = 0
    spend_command: str | None = None
    spend_order_amount: Decimal | None = None
    spent: tuple[Taken, ...] = ()
    refunds: dict[str, str] = Field(default_factory=dict)  # refund_id -> command_id
    refunded: Decimal = Decimal(0)
    reversed: int = 0
    returned: int = 0
    emitted: tuple[Remembered, ...] = ()
    # Past its refund window (streams.settlement): only what idempotency needs is kept.
    settled: bool = False

    def to_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)  # model_dump_json's bytes

    @classmethod
    def from_bytes(cls, data: bytes | None) -> OrderState:
        return _NO_ORDER if data is None else cls.model_validate_json(data)


CustomerState.model_rebuild()
_NO_ORDER = OrderState()  # frozen: one shared empty entry for orders not seen yet


_ORDER_COMMANDS = (PurchaseCommand, SpendCommand, RefundCommand)


def order_key(cmd: Command) -> str | None:
    """The order-table key a command needs (within its customer), or None."""
    if isinstance(cmd, _ORDER_COMMANDS):
        return cmd.order_id
    if isinstance(cmd, ReferralCommand):
        return f"referral:{cmd.referee_id}:{cmd.order_id}"
    return None


@dataclass
class Result:
    state: CustomerState
    order: OrderState | None
    events: list[str]  # JSON, in emission order
    status: str  # applied | duplicate | rejected
    followups: list[Command] = field(default_factory=list)
    reason: str | None = None
    replayed: bool = False  # the same command again: what it did the first time, re-sent


# --- applying one command ------------------------------------------------------------------


class _Builder:
    """Accumulates the events of one command, numbering them and stamping the state after."""

    def __init__(self, state: CustomerState, cmd: Command) -> None:
        self.cmd = cmd
        self.seq = state.seq
        self.lots = list(state.lots)
        self.lifetime = state.lifetime_spend
        self.level = state.level
        self.events: list[str] = []

    def emit(self, model: type[Event], event_id: str, **fields: Any) -> Event:
        self.seq += 1
        event = model(
            event_id=event_id,
            tenant_id=self.cmd.tenant_id,
            customer=self.cmd.customer,
            occurred_at=self.cmd.occurred_at,
            seq=self.seq,
            request_id=None if isinstance(self.cmd, ExpireCommand) else self.cmd.request_id,
            balance_after=sum(lot.remaining for lot in self.lots),
            lifetime_spend=_money(self.lifetime),
            level=self.level,
            **fields,
        )
        # model_dump_json's own serialiser, without the wrapper's argument handling
        self.events.append(model.__pydantic_serializer__.to_json(event).decode())
        return event

    def expire_due(self) -> None:
        at = self.cmd.occurred_at
        due = [lot for lot in self.lots if lot.expires_at <= at]
        for lot in sorted(due, key=_lot_order) if due else ():
            self.lots.remove(lot)
            if lot.remaining:
                self.emit(
                    BonusExpired,
                    derived_id(lot.lot_id, "bonus_expired", self.seq + 1),
                    lot_id=lot.lot_id,
                    points=lot.remaining,
                    expired_at=lot.expires_at,
                )

    def take(self, points: int, lots: list[Lot]) -> list[Taken]:
        """Take up to `points` from `lots` in order; returns what was taken from which lot."""
        taken = []
        for lot in lots:
            if points <= 0:
                break
            n = min(points, lot.remaining)
            if n <= 0:
                continue
            points -= n
            taken.append(
                Taken(
                    lot_id=lot.lot_id,
                    points=n,
                    available_at=lot.available_at,
                    expires_at=lot.expires_at,
                )
            )
            i = self.lots.index(lot)
            if lot.remaining == n:
                del self.lots[i]
            else:
                self.lots[i] = replaced(lot, remaining=lot.remaining - n)
        return taken

    def add_lot(self, lot_id: str, points: int, rules: TenantRules) -> Lot:
        """The lot that holds a new award: its own, or an open lot with the same times, which
        it joins. Lots that become spendable and expire together are one lot, so a customer's
        state grows with the distinct award times, not with the number of awards (a batch of
        50,000 purchases for one customer is one lot)."""
        at = self.cmd.occurred_at
        lot = Lot(
            lot_id=lot_id,
            remaining=points,
            available_at=at + timedelta(days=rules.hold_days),
            expires_at=at + timedelta(days=rules.bonus_ttl_days),
        )
        if not points:
            return lot
        for i, open_lot in enumerate(self.lots):
            if (open_lot.available_at, open_lot.expires_at) == (lot.available_at, lot.expires_at):
                self.lots[i] = replaced(open_lot, remaining=open_lot.remaining + points)
                return self.lots[i]
        self.lots.append(lot)
        return lot

    def relevel(self, rules: TenantRules, order_id: str | None) -> None:
        reached = rules.level_for(self.lifetime)
        new = reached.name if reached else None
        if new != self.level:
            before = self.level
            rank: dict[str | None, int] = {lv.name: i for i, lv in enumerate(rules.levels)}
            up = rank.get(new, -1) > rank.get(before, -1)
            self.level = new
            self.emit(
                LevelChanged,
                derived_id(self.cmd.command_id, "level_changed"),
                previous_level=before,
                direction="up" if up else "down",
                order_id=order_id,
            )

    def state(self, base: CustomerState, **changes: Any) -> CustomerState:
        return replaced(
            base,
            seq=self.seq,
            lots=tuple(self.lots),
            lifetime_spend=self.lifetime,
            level=self.level,
            **changes,
        )


def _lot_order(lot: Lot | Taken) -> tuple[datetime, datetime, str]:
    return (lot.expires_at, lot.available_at, lot.lot_id)


def remembered(
    state: CustomerState, order: OrderState | None, command_id: str
) -> Remembered | None:
    """What this command did when it was applied, if it was (and is still remembered)."""
    kept = order.emitted if order is not None else state.recent
    return next((r for r in kept if r.command_id == command_id), None)


def apply(state: CustomerState, orders: Mapping[str, OrderState], cmd: Command) -> Result:
    """Apply one command to one customer's ledger."""
    key = order_key(cmd)
    order = (orders.get(key) or _NO_ORDER) if key is not None else None
    if key is not None and state.last_command == cmd.command_id and state.last_order_key == key:
        order = state.last_order  # the order entry's write was lost; the customer entry has it
    seen = remembered(state, order, cmd.command_id)
    if seen is not None:  # a replay of the same input: the same events, nothing changes
        followups = [parse_command(f.encode()) for f in seen.followups]
        return Result(
            state, order, list(seen.events), seen.status, followups, seen.reason, replayed=True
        )
    result = _HANDLERS[type(cmd)](state, order or _NO_ORDER, cmd)
    if result.status == "duplicate":
        return result
    memo = Remembered(
        command_id=cmd.command_id,
        status=result.status,
        events=tuple(result.events),
        followups=tuple(f.model_dump_json() for f in result.followups),
        reason=result.reason,
    )
    if key is not None:
        entry = result.order or order or _NO_ORDER
        result.order = replaced(entry, emitted=(*entry.emitted, memo)[-REMEMBERED_PER_ORDER:])
        result.state = replaced(
            result.state, last_command=cmd.command_id, last_order_key=key, last_order=result.order
        )
    else:
        kept = result.state.recent
        result.state = replaced(
            result.state,
            recent=(*kept, memo)[-REMEMBERED_PER_CUSTOMER:],
            last_command=cmd.command_id,
            last_order_key=None,
            last_order=None,
        )
    return result


def _duplicate(state: CustomerState, order: OrderState | None, why: str) -> Result:
    return Result(state, order, [], "duplicate", reason=why)


def _purchase(state: CustomerState, order: OrderState, cmd: PurchaseCommand) -> Result:
    if order.purchase_command is not None:
        return _duplicate(state, order, f"order {cmd.order_id} was already awarded")
    rules = cmd.rules
    b = _Builder(state, cmd)
    b.expire_due()
    held = rules.level_for(b.lifetime)
    percent = rules.base_percent + (held.bonus_percent if held else 0)
    points = award_points(cmd.amount, percent, rules.rounding)
    lot_id = derived_id(cmd.tenant_id, cmd.order_id, "bonus_awarded")
    lot = b.add_lot(lot_id, points, rules)
    b.lifetime += cmd.amount
    b.emit(
        BonusAwarded,
        lot_id,
        order_id=cmd.order_id,
        amount=_money(cmd.amount),
        percent=_money(percent),
        points=points,
        lot_id=lot.lot_id,
        available_at=lot.available_at,
        expires_at=lot.expires_at,
    )
    b.relevel(rules, cmd.order_id)
    followups: list[Command] = []
    if state.referrer_id and (rules.referral_mode == "every_purchase" or state.purchases == 0):
        followups.append(
            ReferralCommand(
                command_id=derived_id(cmd.command_id, "referral"),
                request_id=cmd.request_id,
                item=cmd.item,
                tenant_id=cmd.tenant_id,
                customer=CustomerRef(id=state.referrer_id),
                occurred_at=cmd.occurred_at,
                rules=rules,
                order_id=cmd.order_id,
                referee_id=cmd.customer.id,
                amount=cmd.amount,
            )
        )
    new_order = replaced(
        order,
        purchase_command=cmd.command_id,
        amount=cmd.amount,
        award_lot=lot.lot_id if points else None,
        awarded=points,
    )
    new_state = b.state(state, purchases=state.purchases + 1)
    return Result(new_state, new_order, b.events, "applied", followups)


def _referral(state: CustomerState, order: OrderState, cmd: ReferralCommand) -> Result:
    if order.purchase_command is not None:
        return _duplicate(state, order, "referral already awarded for this order")
    rules = cmd.rules
    b = _Builder(state, cmd)
    b.expire_due()
    points = award_points(cmd.amount, rules.referral_percent, rules.rounding)
    lot_id = derived_id(cmd.tenant_id, cmd.referee_id, cmd.order_id, "referral_awarded")
    lot = b.add_lot(lot_id, points, rules)
    b.emit(
        ReferralAwarded,
        lot_id,
        order_id=cmd.order_id,
        referee_id=cmd.referee_id,
        amount=_money(cmd.amount),
        percent=_money(rules.referral_percent),
        points=points,
        lot_id=lot.lot_id,
        available_at=lot.available_at,
        expires_at=lot.expires_at,
    )
    new_order = replaced(
        order, purchase_command=cmd.command_id, award_lot=lot.lot_id, awarded=points
    )
    return Result(b.state(state), new_order, b.events, "applied")


def _register(state: CustomerState, order: OrderState, cmd: RegisterCommand) -> Result:
    if state.registered:
        return _duplicate(state, None, "the customer is already registered")
    b = _Builder(state, cmd)
    b.expire_due()
    b.emit(
        CustomerRegistered,
        derived_id(cmd.tenant_id, cmd.customer.id, "customer_registered"),
        name=cmd.name,
        referral_code=cmd.referral_code,
        referrer_id=cmd.referrer_id,
    )
    new_state = b.state(
        state,
        registered=True,
        referral_code=cmd.referral_code,
        referrer_id=cmd.referrer_id,
    )
    return Result(new_state, None, b.events, "applied")


def _spend(state: CustomerState, order: OrderState, cmd: SpendCommand) -> Result:
    if order.spend_command is not None:
        return _duplicate(state, order, f"points were already spent on order {cmd.order_id}")
    rules = cmd.rules
    at = cmd.occurred_at
    b = _Builder(state, cmd)
    b.expire_due()
    active = [lot for lot in b.lots if lot.active(at)]
    active_balance = sum(lot.remaining for lot in active)
    max_points = None
    reason = detail = None
    if rules.max_spend_percent < 100:
        if cmd.order_amount is None:
            reason = "order_amount_required"
            detail = (
                f"this shop lets points pay at most {_money(rules.max_spend_percent)}% "
                "of an order: send orderAmount"
            )
        else:
            max_points = award_points(cmd.order_amount, rules.max_spend_percent, "floor")
    elif cmd.order_amount is not None:
        max_points = award_points(cmd.order_amount, _HUNDRED, "floor")
    if reason is None and max_points is not None and cmd.points > max_points:
        assert cmd.order_amount is not None  # max_points came from it
        reason = "over_max_percent"
        detail = (
            f"{cmd.points} points exceed the {max_points} this order allows "
            f"({_money(rules.max_spend_percent)}% of {_money(cmd.order_amount)})"
        )
    if reason is None and cmd.points > active_balance:
        reason = "insufficient_balance"
        pending = sum(lot.remaining for lot in b.lots) - active_balance
        detail = f"{cmd.points} points asked, {active_balance} active" + (
            f" ({pending} more pending)" if pending else ""
        )
    if reason is not None:
        b.emit(
            SpendRejected,
            derived_id(cmd.command_id, "spend_rejected"),
            order_id=cmd.order_id,
            points=cmd.points,
            reason=reason,
            detail=detail,
            active_balance=active_balance,
            max_points=max_points,
        )
        return Result(b.state(state), order, b.events, "rejected", reason=reason)
    taken = b.take(cmd.points, sorted(active, key=_lot_order))
    b.emit(
        BonusSpent,
        derived_id(cmd.tenant_id, cmd.order_id, "bonus_spent"),
        order_id=cmd.order_id,
        points=cmd.points,
        order_amount=_money(cmd.order_amount) if cmd.order_amount is not None else None,
        lots=[LotPoints(lot_id=t.lot_id, points=t.points) for t in taken],
    )
    new_order = replaced(
        order,
        spend_command=cmd.command_id,
        spend_order_amount=cmd.order_amount,
        spent=tuple(taken),
    )
    return Result(b.state(state), new_order, b.events, "applied")


def _refund(state: CustomerState, order: OrderState, cmd: RefundCommand) -> Result:
    if cmd.refund_id in order.refunds:
        return _duplicate(state, order, f"refund {cmd.refund_id} was already applied")
    b = _Builder(state, cmd)
    b.expire_due()
    base = order.amount if order.amount is not None else order.spend_order_amount
    if order.purchase_command is None and order.spend_command is None:
        return _reject_refund(b, state, order, f"order {cmd.order_id} is not known for them")
    if order.settled:
        return _reject_refund(b, state, order, f"the refund window of order {cmd.order_id} ended")
    spent_points = sum(t.points for t in order.spent)
    refundable = (base - order.refunded) if base is not None else None
    if refundable is not None and refundable <= 0:
        return _reject_refund(b, state, order, f"order {cmd.order_id} is already fully refunded")
    amount = cmd.amount if cmd.amount is not None else refundable
    if amount is not None and refundable is not None and amount > refundable:
        return _reject_refund(
            b, state, order, f"refund {_money(amount)} exceeds what is left: {_money(refundable)}"
        )
    refunded = order.refunded + (amount or 0)
    full = base is None or refunded >= base
    if base is None or full:
        reverse, give_back = order.awarded - order.reversed, spent_points - order.returned
    else:
        reverse = share(order.awarded, refunded, base) - order.reversed
        give_back = share(spent_points, refunded, base) - order.returned

    # Reverse the award: from the order's own lot first, then from the lots expiring soonest;
    # what the balance cannot cover is forgiven and reported as `unrecovered`.
    own = [lot for lot in b.lots if lot.lot_id == order.award_lot]
    others = sorted((lot for lot in b.lots if lot.lot_id != order.award_lot), key=_lot_order)
    taken = b.take(reverse, own + others) if reverse > 0 else []
    recovered = sum(t.points for t in taken)
    if order.amount is not None:  # a refunded purchase no longer counts towards the level
        b.lifetime = max(Decimal(0), b.lifetime - (amount or 0))
    money = _money(amount if amount is not None else Decimal(0))
    if reverse > 0 or order.purchase_command is not None:
        b.emit(
            BonusReversed,
            derived_id(cmd.tenant_id, cmd.order_id, cmd.refund_id, "bonus_reversed"),
            order_id=cmd.order_id,
            refund_id=cmd.refund_id,
            refund_amount=money,
            points=recovered,
            unrecovered=max(reverse, 0) - recovered,
            lots=[LotPoints(lot_id=t.lot_id, points=t.points) for t in taken],
        )
    # Give back spent points into the lots they came from, keeping those lots' times; a lot
    # that has expired since takes them back and expires again at once (`bonus_expired`).
    returned: list[LotPoints] = []
    left = give_back
    for t in sorted(order.spent, key=_lot_order, reverse=True):
        if left <= 0:
            break
        n = min(left, t.points)
        left -= n
        returned.append(LotPoints(lot_id=t.lot_id, points=n))
        lots = {lot.lot_id: i for i, lot in enumerate(b.lots)}
        if t.lot_id in lots:
            lot = b.lots[lots[t.lot_id]]
            b.lots[lots[t.lot_id]] = replaced(lot, remaining=lot.remaining + n)
        else:
            b.lots.append(
                Lot(
                    lot_id=t.lot_id,
                    remaining=n,
                    available_at=t.available_at,
                    expires_at=t.expires_at,
                )
            )
    if returned:
        b.emit(
            BonusReturned,
            derived_id(cmd.tenant_id, cmd.order_id, cmd.refund_id, "bonus_returned"),
            order_id=cmd.order_id,
            refund_id=cmd.refund_id,
            points=sum(r.points for r in returned),
            lots=returned,
        )
        b.expire_due()
    b.relevel(cmd.rules, cmd.order_id)
    new_order = replaced(
        order,
        refunds={**order.refunds, cmd.refund_id: cmd.command_id},
        refunded=refunded,
        reversed=order.reversed + max(reverse, 0),
        returned=order.returned + (give_back - left),
    )
    return Result(b.state(state), new_order, b.events, "applied")


def _reject_refund(b: _Builder, state: CustomerState, order: OrderState, why: str) -> Result:
    return Result(b.state(state), order, b.events, "rejected", reason=why)


def _expire(state: CustomerState, order: OrderState, cmd: ExpireCommand) -> Result:
    b = _Builder(state, cmd)
    b.expire_due()
    if not b.events:
        return Result(state, None, [], "duplicate", reason="nothing to expire")
    return Result(b.state(state), None, b.events, "applied")


_HANDLERS: dict[type[Command], Callable[[CustomerState, OrderState, Any], Result]] = {
    PurchaseCommand: _purchase,
    ReferralCommand: _referral,
    RegisterCommand: _register,
    SpendCommand: _spend,
    RefundCommand: _refund,
    ExpireCommand: _expire,
}
