"""Refunds held back until their order is claimed: which come out, and their references."""

from __future__ import annotations

import time
from types import SimpleNamespace

from streams.deferral import DeferredRefunds


class _Message:
    def __init__(self) -> None:
        self.refs = 1

    def incref(self) -> None:
        self.refs += 1

    def decref(self) -> None:
        self.refs -= 1


def _event():
    return SimpleNamespace(message=_Message())


async def test_only_claimed_or_expired_refunds_come_out_with_one_query_per_shop():
    asked: list[tuple[str, list[str]]] = []

    async def claimed(tenant: str, orders: list[str]) -> set[str]:
        asked.append((tenant, sorted(orders)))
        return {"O-2"} if tenant == "shop-a" else set()

    held = DeferredRefunds()
    later = time.monotonic() + 60
    a1, a2, b1, b2 = _event(), _event(), _event(), _event()
    held.hold(a1, "shop-a", "O-1", later, again=False)
    held.hold(a2, "shop-a", "O-2", later, again=False)
    held.hold(b1, "shop-b", "O-9", later, again=False)
    held.hold(b2, "shop-b", "O-8", time.monotonic() - 1, again=False)  # its time is up
    assert [e.message.refs for e in (a1, a2, b1, b2)] == [2, 2, 2, 2]

    due = await held.due(claimed)
    assert [d.order_id for d in due] == ["O-2", "O-8"]
    assert sorted(asked) == [("shop-a", ["O-1", "O-2"]), ("shop-b", ["O-8", "O-9"])]
    assert len(held) == 2
    for d in due:
        held.release(d)
    assert [e.message.refs for e in (a2, b2)] == [1, 1]


async def test_held_again_keeps_one_extra_reference_and_nothing_held_asks_nothing():
    async def never(tenant, orders):  # pragma: no cover - must not be called
        raise AssertionError("no query when nothing is held")

    held = DeferredRefunds()
    assert await held.due(never) == []
    e = _event()
    held.hold(e, "shop", "O-1", time.monotonic() + 60, again=False)
    held.hold(e, "shop", "O-1", time.monotonic() + 60, again=True)
    assert e.message.refs == 2
    held.forget()
    assert len(held) == 0
