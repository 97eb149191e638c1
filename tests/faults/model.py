"""The expected ledger: the pure rules core fed the very inputs the broker stored, in order.

Each stored raw record (`webhooks.raw`, the tenant's records in log order) is turned into
commands exactly as `streams.normalize` does it (same parser, same derived command ids, the
order's first claimant as its owner, the referrer named by email), and every command goes
through `schemas.rules.dispatch.apply`, follow-ups (referral awards) included. Customer ids come
from Postgres's identity directory, so the expected events carry the very `event_id`s the engine
must have emitted. No I/O here.

A follow-up is a command one customer's step sends to another customer (the referee's first
purchase awards the referrer): it reaches the referrer's partition of `loyalty.commands` when
it does, after whatever the referrer's own requests put there meanwhile (a kill -9 of the
referee's worker delays it by seconds). That order is the engine's to choose, and the only
freedom it has: given where each follow-up landed on that log (`positions`), the model applies
it just before the first of the referrer's own commands that comes after it there. The
referrer's own commands keep the order the shop sent them in, so a reordering of those is
still caught. Without a position (not on the log yet), a follow-up is applied at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kopilka.core.ids import derived_id
from schemas.actions.refund import Refund
from schemas.actions.register import Registration
from schemas.actions.spend import Spend
from schemas.commands import PurchaseCommand, RefundCommand, RegisterCommand, SpendCommand
from schemas.inbound import InboundError, parse_webhook
from schemas.messages import Command, CustomerRef, RawEnvelope
from schemas.rules.dispatch import apply, order_key
from schemas.rules.state import CustomerState, OrderState
from schemas.tenant_rules import TenantRules


def event_key(event: dict) -> tuple:
    """What one event is about: two different ids for one key is a double."""
    return (
        event["type"],
        event["customer"]["id"],
        event.get("order_id"),
        event.get("refund_id"),
        event.get("referee_id"),
    )


@dataclass
class Expected:
    events: dict[str, dict] = field(default_factory=dict)  # event_id -> the event
    by_body: dict[str, set[str]] = field(default_factory=dict)  # raw body -> its event ids
    states: dict[str, CustomerState] = field(default_factory=dict)  # customer id -> state
    refused: dict[str, str] = field(default_factory=dict)  # raw event_id -> why no command

    @property
    def keys(self) -> set[tuple]:
        return {event_key(e) for e in self.events.values()}


# (partition, offset, index in a batch record: 0 for a record of one command) on loyalty.commands
Position = tuple[int, int, int]
_NOWHERE = (1 << 62, 1 << 62, 0)


class Model:
    def __init__(
        self,
        tenant_id: str,
        rules: TenantRules,
        ids: dict[str, str],
        positions: dict[str, Position] | None = None,
    ) -> None:
        """`ids`: email -> customer id, as Postgres's identity directory has them;
        `positions`: command id -> where it first landed on loyalty.commands."""
        self.tenant_id, self.rules, self.ids = tenant_id, rules, ids
        self.positions = positions or {}
        self.orders: dict[tuple[str, str], OrderState] = {}
        self.owners: dict[str, str] = {}  # order id -> the customer who claimed it first
        # customer id -> follow-ups on their way: (position, command, the event ids' owner)
        self.pending: dict[str, list[tuple[Position, Command, set[str]]]] = {}
        self.out = Expected()

    def customer(self, email: str) -> CustomerRef:
        return CustomerRef(
            id=self.ids.get(email, derived_id("not-in-postgres", email)), email=email
        )

    def feed(self, env: RawEnvelope) -> None:
        ids = self.out.by_body.setdefault(env.body, set())
        for cmd in self._commands(env):
            self._deliver(cmd.customer.id, before=self.positions.get(cmd.command_id, _NOWHERE))
            self._apply(cmd, ids)

    def finish(self) -> Expected:
        """Apply the follow-ups that landed after every command of their customer."""
        for customer in list(self.pending):
            self._deliver(customer, before=None)
        return self.out

    def _deliver(self, customer: str, before: Position | None) -> None:
        """Apply, in log order, the follow-ups for `customer` that landed before `before`."""
        while queue := self.pending.get(customer):
            queue.sort(key=lambda p: p[0])
            at, cmd, ids = queue[0]
            if before is not None and at >= before:
                return
            queue.pop(0)
            self._apply(cmd, ids)

    def _commands(self, env: RawEnvelope) -> list[Command]:
        try:
            parsed = parse_webhook(
                env.raw_body(), env.content_type, phone_region=self.rules.phone_region
            )
        except InboundError as exc:
            self.out.refused[env.event_id] = exc.code
            return []
        base = {
            "request_id": env.event_id,
            "tenant_id": self.tenant_id,
            "rules": self.rules,
            "occurred_at": env.received_at,
        }
        commands: list[Command] = []
        for p in parsed.purchases:
            customer = self.customer(p.email)
            if self.owners.setdefault(p.order_id, customer.id) != customer.id:
                self.out.refused[env.event_id] = "order_of_another_customer"
                continue
            commands.append(
                PurchaseCommand(
                    command_id=derived_id(env.event_id, p.index),
                    item=p.index,
                    customer=customer,
                    order_id=p.order_id,
                    amount=p.amount,
                    description=p.description,
                    **base,
                )
            )
        request = parsed.request
        if isinstance(request, Spend):
            s = request
            customer = self.customer(s.email)
            if self.owners.setdefault(s.order_id, customer.id) != customer.id:
                self.out.refused[env.event_id] = "order_of_another_customer"
                return commands
            commands.append(
                SpendCommand(
                    command_id=derived_id(env.event_id, 0),
                    customer=customer,
                    order_id=s.order_id,
                    points=s.points,
                    order_amount=s.order_amount,
                    **base,
                )
            )
        elif isinstance(request, Refund):
            r = request
            owner = self.owners.get(r.order_id)
            if owner is None:
                self.out.refused[env.event_id] = "unknown_order"
                return commands
            refund_id = r.refund_id or (f"amount:{r.amount}" if r.amount is not None else "full")
            commands.append(
                RefundCommand(
                    command_id=derived_id(env.event_id, 0),
                    customer=CustomerRef(id=owner),
                    order_id=r.order_id,
                    refund_id=refund_id,
                    amount=r.amount,
                    **base,
                )
            )
        elif isinstance(request, Registration):
            reg = request
            customer = self.customer(reg.email)
            referrer_id = None
            if reg.referrer is not None:
                assert reg.referrer_kind == "email", "the load names referrers by email"
                referrer_id = self.ids.get(reg.referrer)
                if referrer_id is None or referrer_id == customer.id:
                    self.out.refused[env.event_id] = "referrer"
                    return commands
            held = self.out.states.get(customer.id)
            if held is not None and held.registered:  # `register()` keeps the first referrer
                referrer_id = held.referrer_id
            commands.append(
                RegisterCommand(
                    command_id=derived_id(env.event_id, 0),
                    customer=customer,
                    name=reg.name,
                    referral_code="MODEL",
                    referrer_id=referrer_id,
                    **base,
                )
            )
        return commands

    def _apply(self, cmd: Command, ids: set[str]) -> None:
        """Apply `cmd`; its events' ids go to `ids` (those of the raw body it came from)."""
        key = cmd.customer.id
        state = self.out.states.get(key, CustomerState())
        okey = order_key(cmd)
        orders = {okey: self.orders.get((key, okey), OrderState())} if okey is not None else {}
        result = apply(state, orders, cmd)
        self.out.states[key] = result.state
        if okey is not None and result.order is not None:
            self.orders[(key, okey)] = result.order
        for raw in result.events:
            event = json.loads(raw)
            self.out.events[event["event_id"]] = event
            ids.add(event["event_id"])
        for followup in result.followups:
            at = self.positions.get(followup.command_id)
            if at is None:
                self._apply(followup, ids)
            else:
                self.pending.setdefault(followup.customer.id, []).append((at, followup, ids))


def expected(
    tenant_id: str,
    rules: TenantRules,
    ids: dict[str, str],
    stored: list[RawEnvelope],
    positions: dict[str, Position] | None = None,
) -> Expected:
    model = Model(tenant_id, rules, ids, positions)
    for env in stored:
        model.feed(env)
    return model.finish()
