"""Run many small I/O jobs concurrently where they are independent, in order where they are not.

Items that share a key (an email, a phone, an order id) form one group and run one after
another, in the order given; groups run concurrently. Results come back in the items' order. So
a 10,000-item batch resolves its customers in parallel, yet two items naming the same customer
or order always resolve as if they had been processed one by one: deterministic for replays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def groups(keys: Sequence[Iterable[Hashable]]) -> list[list[int]]:
    """Indices of items connected through shared keys (union-find), each group in order."""
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[Hashable, int] = {}
    for i, item_keys in enumerate(keys):
        for key in item_keys:
            j = owner.setdefault(key, i)
            if j != i:
                parent[root(i)] = root(j)
    found: dict[int, list[int]] = {}
    for i in range(len(keys)):
        found.setdefault(root(i), []).append(i)
    return list(found.values())


async def run_grouped(
    items: Sequence[T],
    keys: Callable[[T], Iterable[Hashable]],
    job: Callable[[T], Awaitable[R]],
    concurrency: int = 16,
) -> list[R]:
    results: list[R | None] = [None] * len(items)
    limit = asyncio.Semaphore(concurrency)

    async def run(indices: list[int]) -> None:
        async with limit:
            for i in indices:
                results[i] = await job(items[i])

    await asyncio.gather(*(run(g) for g in groups([list(keys(it)) for it in items])))
    return results  # type: ignore[return-value]
