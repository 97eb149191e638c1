"""ingest.coalesce: submits of one turn share a call; those made meanwhile go in the next."""

from __future__ import annotations

import asyncio

import pytest

from ingest.coalesce import Coalescer


class _Service:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def send(self, batch: list[int]) -> list[int]:
        self.calls.append(batch)
        await self.release.wait()
        return [item * 10 for item in batch]


async def test_submits_of_one_turn_share_one_call_and_get_their_own_answers():
    service = _Service()
    batcher = Coalescer(service.send)
    answers = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert answers == [0, 10, 20, 30, 40]
    assert service.calls == [[0, 1, 2, 3, 4]]


async def test_what_arrives_during_a_call_goes_together_in_the_next_in_order():
    service = _Service()
    service.release.clear()
    batcher = Coalescer(service.send)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)
    assert service.calls == [[1]]  # a lone submit goes at once
    later = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert service.calls == [[1]]  # held while the first call is in flight
    service.release.set()
    assert await asyncio.gather(first, *later) == [10, 20, 30, 40]
    assert service.calls == [[1], [2, 3, 4]]


async def test_batches_are_capped():
    service = _Service()
    batcher = Coalescer(service.send, max_batch=3)
    await asyncio.gather(*(batcher.submit(i) for i in range(7)))
    assert service.calls == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_failed_call_fails_its_batch_only():
    failing = True

    async def send(batch: list[int]) -> list[int]:
        if failing:
            raise ConnectionError("down")
        return batch

    batcher = Coalescer(send)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError] * 3
    failing = False
    assert await batcher.submit(7) == 7  # the next batch goes as usual


async def test_a_request_that_gave_up_does_not_break_the_others():
    service = _Service()
    service.release.clear()
    batcher = Coalescer(service.send)
    gone = asyncio.ensure_future(batcher.submit(1))
    kept = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0.01)
    gone.cancel()
    service.release.set()
    assert await kept == 20
    with pytest.raises(asyncio.CancelledError):
        await gone
