"""Refunds that overtook their purchase, held back (unacknowledged) until their order is claimed.

A refund travels on its order's partition, its purchase on its customer's (schemas.routing), so
a refund can be normalised before its purchase. It is then put aside here, neither refused nor
waited for: its message keeps one more reference, so its offset is not committed, and every
other record goes on. It is tried again once its order is claimed, or when `refund_order_wait_s`
has passed (then it is refused as an unknown order, as it would have been at once before).

Finding which are due costs one query per shop with refunds waiting, whatever their number:
the normaliser asks at each batch and every half second, so it must stay cheap when nothing is
due (a retry that re-normalised every waiting refund each time held the normaliser's lock for
seconds under load, and the backlog it caused made more refunds wait).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from faust.types import EventT

ClaimedOrders = Callable[[str, list[str]], Awaitable[set[str]]]


@dataclass
class Deferred:
    event: EventT
    tenant_id: str
    order_id: str
    until: float  # time.monotonic() after which it is refused


class DeferredRefunds:
    def __init__(self) -> None:
        self._held: list[Deferred] = []

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, event: EventT, tenant_id: str, order_id: str, until: float, *, again: bool):
        """Put a refund aside; `again` when it was already held (its extra reference stays)."""
        if not again:
            event.message.incref()
        self._held.append(Deferred(event, tenant_id, order_id, until))

    def forget(self) -> None:
        """Let go of all (a rebalance): unacknowledged, they come again from the committed
        offset to whoever owns their partition then."""
        self._held.clear()

    async def due(self, claimed: ClaimedOrders) -> list[Deferred]:
        """Take out the ones to try again now: their order is claimed, or their time is up."""
        if not self._held:
            return []
        wanted: dict[str, list[str]] = defaultdict(list)
        for d in self._held:
            wanted[d.tenant_id].append(d.order_id)
        ready = {tenant: await claimed(tenant, orders) for tenant, orders in wanted.items()}
        now = time.monotonic()
        due = [d for d in self._held if now >= d.until or d.order_id in ready[d.tenant_id]]
        if due:
            taken = {id(d) for d in due}
            self._held = [d for d in self._held if id(d) not in taken]
        return due

    @staticmethod
    def release(deferred: Deferred) -> None:
        """Done with it (sent or refused): its offset may be committed now."""
        deferred.event.message.decref()
