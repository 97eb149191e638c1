"""Typed views of Kopilka's answers. Each keeps the JSON it came from in `raw`, so a field
Kopilka adds later is there before this package names it. Money stays an exact string."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """What the pipeline did with one command of a request (`Prefer: wait`)."""

    index: int
    status: str  # "applied" | "duplicate" | "rejected"
    reason: str | None
    events: list[dict[str, Any]]

    @property
    def applied(self) -> bool:
        return self.status == "applied"

    @property
    def balance_after(self) -> int | None:
        """The customer's balance after the last event, when there was one."""
        return self.events[-1].get("balance_after") if self.events else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            index=data.get("index", 0),
            status=data["status"],
            reason=data.get("reason"),
            events=list(data.get("events") or []),
        )


@dataclass(frozen=True)
class Receipt:
    """Kopilka's answer to a webhook.

    `status`: "accepted" (stored; processing follows), "processed" (with `Prefer: wait`, done
    within the wait: see `outcomes`), or "duplicate" (this webhook-id was stored before: nothing
    new; `event_id` is the first delivery's)."""

    status: str
    event_id: str
    action: str | None
    orders: list[str]
    outcomes: list[Outcome]
    accepted: list[dict[str, Any]]  # batch: [{"index", "order_id"}]
    rejected: list[dict[str, Any]]  # batch: [{"index", "order_id", "error", "field", "reason"}]
    webhook_id: str | None = None  # the id it was sent (and signed) with
    attempts: int = 1
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def processed(self) -> bool:
        return self.status == "processed"

    @property
    def duplicate(self) -> bool:
        return self.status == "duplicate"

    @property
    def outcome(self) -> Outcome | None:
        """The first (for a single action: the only) outcome; None when not processed in time."""
        return self.outcomes[0] if self.outcomes else None

    @classmethod
    def from_json(cls, data: dict[str, Any], *, webhook_id: str | None, attempts: int) -> Receipt:
        return cls(
            status=data["status"],
            event_id=data["event_id"],
            action=data.get("action"),
            orders=list(data.get("orders") or []),
            outcomes=[Outcome.from_json(o) for o in data.get("outcomes") or []],
            accepted=list(data.get("accepted") or []),
            rejected=list(data.get("rejected") or []),
            webhook_id=webhook_id,
            attempts=attempts,
            raw=data,
        )


@dataclass(frozen=True)
class Balance:
    total: int
    active: int
    pending: int
    expiring_30d: int
    next_expiry: str | None


@dataclass(frozen=True)
class Level:
    name: str | None
    percent: str
    lifetime_spend: str
    next: dict[str, Any] | None  # {"name", "min_lifetime_spend", "spend_to_reach"}


@dataclass(frozen=True)
class LedgerEntry:
    event_id: str
    type: str
    order_id: str | None
    amount: str | None
    delta: int
    balance_after: int
    reason: str | None
    expires_at: str | None
    occurred_at: str


@dataclass(frozen=True)
class Customer:
    """`GET /api/v1/customers`: the customer, balance, level and ledger (newest first)."""

    id: str
    email: str | None
    phone: str | None
    name: str | None
    referral_code: str | None
    referrer_id: str | None
    balance: Balance
    level: Level
    ledger: list[LedgerEntry]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Customer:
        c = data["customer"]
        return cls(
            id=c["id"],
            email=c.get("email"),
            phone=c.get("phone"),
            name=c.get("name"),
            referral_code=c.get("referral_code"),
            referrer_id=c.get("referrer_id"),
            balance=Balance(**{k: data["balance"].get(k) for k in Balance.__dataclass_fields__}),
            level=Level(**{k: data["level"].get(k) for k in Level.__dataclass_fields__}),
            ledger=[
                LedgerEntry(**{k: e.get(k) for k in LedgerEntry.__dataclass_fields__})
                for e in data.get("ledger") or []
            ],
            raw=data,
        )


@dataclass(frozen=True)
class StreamEvent:
    """One event of the live stream: `id` is the resume token, `data` the event's JSON."""

    id: str | None
    type: str
    data: dict[str, Any]
