"""Settlement: an order past its refund window shrinks to a marker in the ledger's table.

An order's table entry holds what a refund needs (the amount, the award's lot, the lots a spend
took) and the events of its commands, for exact re-emission on a replay: a kilobyte or so.
Once the refund window (`order_refund_window_days`) has passed, a refund is refused anyway and
no replay can still concern it, so the entry keeps only what makes a retried purchase or spend
a duplicate: a few dozen bytes. State then grows with orders by bytes, not kilobytes.

The leader's sweep finds unsettled orders past the window in Postgres (`order_claims`, where
the normaliser claimed them) and sends one `settle` command per customer to the customer's key,
so settling is applied in order with everything else that customer does. Settling twice is
harmless. `register(stream_app)` puts the sweep on an app (streams.app).
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from itertools import islice

from kopilka.core.ids import derived_id
from kopilka.core.logging import get_logger
from kopilka.core.retry import until_done
from schemas.messages import CustomerRef, SettleCommand
from schemas.rules.state import OrderState
from streams.app import StreamApp

log = get_logger(__name__)

ORDERS_PER_COMMAND = 500
_DUE = """
SELECT tenant_id, customer_id, order_id FROM order_claims
WHERE settled_at IS NULL AND claimed_at < $1
ORDER BY claimed_at
LIMIT $2
"""
_MARK = """
UPDATE order_claims SET settled_at = now()
FROM unnest($1::uuid[], $2::text[]) AS s(tenant_id, order_id)
WHERE order_claims.tenant_id = s.tenant_id AND order_claims.order_id = s.order_id
"""


def settled(order: OrderState) -> OrderState:
    """What is left of an order past its refund window: enough to refuse it twice."""
    return OrderState(
        purchase_command=order.purchase_command,
        spend_command=order.spend_command,
        settled=True,
    )


def settle_entries(
    state_table: MutableMapping[str, bytes], customer_key: str, cmd: SettleCommand
) -> int:
    """Shrink the customer's entries of these orders (in the ledger agent); how many shrank."""
    shrunk = 0
    for order_id in cmd.order_ids:
        key = f"o|{customer_key}|{order_id}"
        stored = state_table.get(key)
        if stored is None:
            continue
        order = OrderState.from_bytes(stored)
        if not order.settled:
            state_table[key] = settled(order).to_bytes()
            shrunk += 1
    return shrunk


def due_commands(rows, as_of: datetime) -> list[SettleCommand]:
    """One command per customer and up to ORDERS_PER_COMMAND orders, from order_claims rows."""
    by_customer: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        key = (str(row["tenant_id"]), str(row["customer_id"]))
        by_customer.setdefault(key, []).append(row["order_id"])
    sweep_id = derived_id("settlement-sweep", as_of.isoformat())
    out = []
    for (tenant_id, customer_id), orders in by_customer.items():
        it = iter(orders)
        while chunk := list(islice(it, ORDERS_PER_COMMAND)):
            out.append(
                SettleCommand(
                    command_id=derived_id(sweep_id, tenant_id, customer_id, chunk[0]),
                    request_id=sweep_id,
                    tenant_id=tenant_id,
                    customer=CustomerRef(id=customer_id),
                    occurred_at=as_of,
                    order_ids=chunk,
                )
            )
    return out


_sa: StreamApp  # bound by `register`


def register(stream_app: StreamApp) -> None:
    """The leader's settlement sweep, every `order_settle_interval_s` seconds."""
    global _sa
    _sa = stream_app
    stream_app.app.timer(interval=stream_app.settings.order_settle_interval_s, on_leader=True)(
        settlement_sweep
    )


async def settlement_sweep() -> None:
    """Send a settle command for every order past its window, then mark them settled."""
    settings, commands = _sa.settings, _sa.topics.commands
    pool = await until_done(_sa.resources.pool, "connect")
    now = datetime.now(UTC)
    cutoff = now - timedelta(days=settings.order_refund_window_days)
    rows = await until_done(lambda: pool.fetch(_DUE, cutoff, 50_000), "settlement sweep")
    if not rows:
        return
    sent = []
    for cmd in due_commands(rows, now):
        sent.append(await commands.send(key=cmd.key, value=cmd.to_bytes()))
    for fut in sent:  # on the broker before Postgres says so: a lost send is retried next time
        await fut
    await until_done(
        lambda: pool.execute(
            _MARK, [uuid.UUID(str(r["tenant_id"])) for r in rows], [r["order_id"] for r in rows]
        ),
        "settlement mark",
    )
    log.info("settlement_sweep", orders=len(rows))
