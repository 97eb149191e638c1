"""Agent `ledger`: commands -> the customer's ledger (Faust tables) -> loyalty.events.

All commands of one customer arrive on one partition (key tenant:customer), in order, so its
table entries are only ever touched by one actor. The rules themselves are pure: `streams.rules`.
After each command: the new state is written, follow-up commands (a referral award, on the
referrer's key) and the events are sent, and an outcome for whoever waits on the request.
"""

from __future__ import annotations

import orjson

from kopilka.logging import get_logger
from schemas.messages import Command, ExpireCommand, Outcome, parse_command
from streams.app import app, commands, events, ledger_table, outcomes
from streams.rules import CustomerState, OrderState, Result, apply, order_key

log = get_logger(__name__)


def step(customer_key: str, cmd: Command) -> Result:
    """Load the states the command needs, apply it, store what changed: the customer entry
    first, then the order entry (see streams.app: a lost order write is repaired on replay)."""
    stored = ledger_table.get(f"c|{customer_key}")
    state = CustomerState.from_bytes(stored.encode() if stored else None)
    okey = order_key(cmd)
    orders = {}
    if okey is not None:
        stored_order = ledger_table.get(f"o|{customer_key}|{okey}")
        orders[okey] = OrderState.from_bytes(stored_order.encode() if stored_order else None)
    result = apply(state, orders, cmd)
    if result.state is not state:
        ledger_table[f"c|{customer_key}"] = result.state.to_bytes().decode()
    if okey is not None and result.order is not None and result.order != orders[okey]:
        ledger_table[f"o|{customer_key}|{okey}"] = result.order.to_bytes().decode()
    return result


@app.agent(commands)
async def ledger(stream):
    async for key, value in stream.items():
        cmd = None
        try:
            cmd = parse_command(value)
            result = step(key.decode(), cmd)
        except Exception as exc:  # a bad record or a bug: report it, never stop the partition
            log.exception("command_failed", key=(key or b"").decode(errors="replace")[:200])
            if cmd is not None:
                await outcomes.send(
                    key=cmd.request_id.encode(),
                    value=Outcome(
                        request_id=cmd.request_id,
                        command_id=cmd.command_id,
                        item=cmd.item,
                        status="rejected",
                        reason=f"internal_error: {type(exc).__name__}",
                    ).to_bytes(),
                )
            continue
        for followup in result.followups:
            await commands.send(key=followup.key, value=followup.to_bytes())
        for event in result.events:
            await events.send(key=key, value=event.encode())
        if result.status == "duplicate":
            log.info("duplicate_command", tenant_id=cmd.tenant_id, reason=result.reason)
        if not isinstance(cmd, ExpireCommand):
            await outcomes.send(
                key=cmd.request_id.encode(),
                value=Outcome(
                    request_id=cmd.request_id,
                    command_id=cmd.command_id,
                    item=cmd.item,
                    status=result.status,
                    events=[orjson.loads(e) for e in result.events],
                    reason=result.reason,
                ).to_bytes(),
            )
