"""What every handler shares: the `Result` of one command and the `Builder` that makes it.

A handler opens a `Builder` on the customer's state, lets it expire the lots whose time has come
(`expire_due`, always first), moves points between lots (`add_lot`, `take`), emits its events
(`emit` numbers them and stamps each with the balance, lifetime spend and level after it) and
closes it with `state()`, a copy of the customer's state with those changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from msgspec.structs import replace

from kopilka.core.ids import derived_id
from schemas.event_model import BonusExpired, Event, LevelChanged
from schemas.messages import Command
from schemas.rules.arithmetic import money
from schemas.rules.state import CustomerState, Lot, OrderState, Taken, lot_order
from schemas.tenant_rules import TenantRules

_ZERO = timedelta(0)


@dataclass
class Result:
    state: CustomerState
    order: OrderState | None
    events: list[str]  # JSON, in emission order
    status: str  # applied | duplicate | rejected
    followups: list[Command] = field(default_factory=list)
    reason: str | None = None
    replayed: bool = False  # the same command again: what it did the first time, re-sent


def duplicate(state: CustomerState, order: OrderState | None, why: str) -> Result:
    """A different command for something already done (a shop's retry): nothing to emit."""
    return Result(state, order, [], "duplicate", reason=why)


def in_utc(at: datetime) -> datetime:
    """`at` with the `UTC` tzinfo itself when its offset is zero: the same instant, and the
    form stored lots' times are read in (schemas.rules.state), so comparing them with it takes
    datetime's fast path (same tzinfo: 24 ns), not two utcoffset() calls (250 ns). A command's
    time is the ingress's clock (pydantic's own UTC tzinfo); a customer's entry has a lot per
    award time, and each command compares its time with every lot."""
    return at.replace(tzinfo=UTC) if at.tzinfo is not UTC and at.utcoffset() == _ZERO else at


class Builder:
    """Accumulates the events of one command, numbering them and stamping the state after."""

    def __init__(self, state: CustomerState, cmd: Command) -> None:
        self.cmd = cmd
        self.at = in_utc(cmd.occurred_at)
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
            request_id=None if self.cmd.type == "expire" else self.cmd.request_id,
            balance_after=sum(lot.remaining for lot in self.lots),
            lifetime_spend=money(self.lifetime),
            level=self.level,
            **fields,
        )
        # model_dump_json's own serialiser, without the wrapper's argument handling
        self.events.append(model.__pydantic_serializer__.to_json(event).decode())
        return event

    def expire_due(self) -> None:
        at = self.at
        due = [lot for lot in self.lots if lot.expires_at <= at]
        for lot in sorted(due, key=lot_order) if due else ():
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
                self.lots[i] = replace(lot, remaining=lot.remaining - n)
        return taken

    def add_lot(self, lot_id: str, points: int, rules: TenantRules) -> Lot:
        """The lot that holds a new award: its own, or an open lot with the same times, which
        it joins. Lots that become spendable and expire together are one lot, so a customer's
        state grows with the distinct award times, not with the number of awards (a batch of
        50,000 purchases for one customer is one lot)."""
        at = self.at
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
                self.lots[i] = replace(open_lot, remaining=open_lot.remaining + points)
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
        return replace(
            base,
            seq=self.seq,
            lots=tuple(self.lots),
            lifetime_spend=self.lifetime,
            level=self.level,
            **changes,
        )
