"""The commit barrier waits for every changelog write the broker has not answered yet."""

from __future__ import annotations

import asyncio

import pytest

from streams import changelog_barrier
from streams.changelog_barrier import track, wait_for_changelog


@pytest.fixture(autouse=True)
def _clean_barrier():
    changelog_barrier._pending.clear()
    changelog_barrier._refused.clear()
    yield
    changelog_barrier._pending.clear()
    changelog_barrier._refused.clear()


async def test_the_barrier_waits_for_a_write_still_in_flight():
    loop = asyncio.get_running_loop()
    acked, in_flight = loop.create_future(), loop.create_future()
    acked.set_result("offset 1")
    track(acked)
    track(in_flight)
    barrier = asyncio.create_task(wait_for_changelog())
    await asyncio.sleep(0.05)
    assert not barrier.done()
    in_flight.set_result("offset 2")
    await asyncio.wait_for(barrier, 1)
    assert not changelog_barrier._pending


async def test_a_write_the_broker_refused_stops_every_later_commit():
    loop = asyncio.get_running_loop()
    refused = track(loop.create_future())
    refused.set_exception(RuntimeError("NotEnoughReplicas"))
    await asyncio.sleep(0)  # the done-callback runs
    with pytest.raises(RuntimeError, match="NotEnoughReplicas"):
        await wait_for_changelog()
    with pytest.raises(RuntimeError):
        await wait_for_changelog()


async def test_nothing_pending_returns_at_once():
    await asyncio.wait_for(wait_for_changelog(), 0.5)
