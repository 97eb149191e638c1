"""The expiry sweep: which customers have lots whose time has come, as commands for the ledger.

The ledger expires lots itself whenever a customer's command arrives; the sweep covers customers
who are quiet. It finds open lots with `expires_at <= as_of` in Postgres and sends one
`expire` command per customer to the customer's own key, so the expiry is applied in order with
everything else that customer does. Sweeping twice is harmless: the second finds nothing to do.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from kopilka.core.ids import derived_id
from schemas.actions.expire import ExpireCommand
from schemas.messages import CustomerRef

_DUE = """
SELECT DISTINCT l.tenant_id, l.customer_id, c.email, c.phone
FROM lots l JOIN customers c ON c.id = l.customer_id
WHERE l.remaining > 0 AND l.expires_at <= $1
LIMIT $2
"""


async def due_commands(
    pool: asyncpg.Pool, as_of: datetime, limit: int = 100_000
) -> list[ExpireCommand]:
    sweep_id = derived_id("expiry-sweep", as_of.isoformat())
    return [
        ExpireCommand(
            command_id=derived_id(sweep_id, str(row["tenant_id"]), str(row["customer_id"])),
            request_id=sweep_id,
            tenant_id=str(row["tenant_id"]),
            customer=CustomerRef(
                id=str(row["customer_id"]), email=row["email"], phone=row["phone"]
            ),
            occurred_at=as_of,
        )
        for row in await pool.fetch(_DUE, as_of, limit)
    ]
