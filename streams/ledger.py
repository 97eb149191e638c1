"""Agent `ledger`: commands -> the customer's ledger (a Faust table) -> loyalty.events.

All commands of one customer arrive on one partition (key tenant:customer), in order, so the
table entry is only ever touched by one actor. The rules themselves are pure: `streams.rules`.
"""

from __future__ import annotations

from kopilka.logging import get_logger
from schemas.messages import PurchaseCommand
from streams.app import app, commands, events, ledgers
from streams.rules import CustomerLedger, apply_purchase

log = get_logger(__name__)


@app.agent(commands)
async def ledger(stream):
    async for key, value in stream.items():
        cmd = PurchaseCommand.from_bytes(value)
        table_key = key.decode()
        stored = ledgers.get(table_key)
        state = CustomerLedger.from_bytes(stored.encode() if stored else None)
        new_state, out = apply_purchase(state, cmd)
        if new_state is not state:
            ledgers[table_key] = new_state.to_bytes().decode()
        for event in out:
            payload = event.encode() if isinstance(event, str) else event.to_bytes()
            await events.send(key=key, value=payload)
        if not out:
            log.info("duplicate_order", tenant_id=cmd.tenant_id, order_id=cmd.order_id)
