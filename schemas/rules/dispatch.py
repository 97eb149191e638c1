"""`apply()`: one command to one customer's ledger, through its action's rules (the table of
schemas.actions).

Replays: the same command (same `command_id`) re-emits the very events it emitted the first time
(kept for the last `REMEMBERED_PER_ORDER` commands of an order, `REMEMBERED_PER_CUSTOMER` of the
rest), so a crash between "state saved" and "events sent" loses nothing; a *different* command
for something already done (a shop's retry) emits nothing and reports `duplicate`.
"""

from __future__ import annotations

from collections.abc import Mapping

from msgspec.structs import replace

from schemas.actions import HANDLERS
from schemas.commands import parse_command
from schemas.messages import Command
from schemas.rules.builder import Result
from schemas.rules.state import NO_ORDER, CustomerState, OrderState, Remembered

# How many commands' events are kept for exact re-emission: per order (purchase, spend, refunds,
# retried refused spends) and per customer for the rest (registration, expiry sweeps). A replay
# only ever concerns commands not yet committed, i.e. the last few.
REMEMBERED_PER_ORDER = 16
REMEMBERED_PER_CUSTOMER = 8


def order_key(cmd: Command) -> str | None:
    """The order-table key a command needs (within its customer), or None."""
    handler = HANDLERS.get(type(cmd))
    return handler.order_key(cmd) if handler is not None else None


def remembered(
    state: CustomerState, order: OrderState | None, command_id: str
) -> Remembered | None:
    """What this command did when it was applied, if it was (and is still remembered)."""
    kept = order.emitted if order is not None else state.recent
    return next((r for r in kept if r.command_id == command_id), None)


def apply(state: CustomerState, orders: Mapping[str, OrderState], cmd: Command) -> Result:
    """Apply one command to one customer's ledger."""
    handler = HANDLERS.get(type(cmd))
    key = handler.order_key(cmd) if handler is not None else None
    order = (orders.get(key) or NO_ORDER) if key is not None else None
    if key is not None and state.last_command == cmd.command_id and state.last_order_key == key:
        order = state.last_order  # the order entry's write was lost; the customer entry has it
    seen = remembered(state, order, cmd.command_id)
    if seen is not None:  # a replay of the same input: the same events, nothing changes
        followups = [parse_command(f.encode()) for f in seen.followups]
        return Result(
            state, order, list(seen.events), seen.status, followups, seen.reason, replayed=True
        )
    if handler is None:
        raise KeyError(type(cmd))  # no handler for it (a settle command is not the rules' job)
    result = handler.handle(state, order or NO_ORDER, cmd)
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
        entry = result.order or order or NO_ORDER
        result.order = replace(entry, emitted=(*entry.emitted, memo)[-REMEMBERED_PER_ORDER:])
        result.state = replace(
            result.state, last_command=cmd.command_id, last_order_key=key, last_order=result.order
        )
    else:
        kept = result.state.recent
        result.state = replace(
            result.state,
            recent=(*kept, memo)[-REMEMBERED_PER_CUSTOMER:],
            last_command=cmd.command_id,
            last_order_key=None,
            last_order=None,
        )
    return result
