"""`streams.ready_batches`: a batch is what is waiting when the agent is free, at most `max_`;
each event acknowledged once the agent asks for the next batch. Driven through Faust's
`agent.test_context()` on an app made by `create_app` (no broker)."""

from __future__ import annotations

import asyncio

import pytest

from streams.ready_batches import ready_batches

MAX = 3


@pytest.fixture
def batches(stream_app, as_from_the_consumer):
    """An agent on webhooks.audit that records each batch's values and, while `hold` is clear,
    keeps its current batch (so the next records queue up behind it)."""
    seen: list[list[bytes]] = []
    hold = asyncio.Event()
    hold.set()

    async def record(stream):
        async for batch in ready_batches(stream, MAX):
            seen.append([event.value for event in batch])
            await hold.wait()

    agent = stream_app.app.agent(stream_app.topics.webhooks_audit, name="batches")(record)
    return agent, seen, hold


async def until(condition, seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("not within the time")


async def test_a_lone_record_is_handed_out_alone_and_at_once(batches):
    agent, seen, _ = batches
    async with agent.test_context() as ctx:
        await ctx.put(b"a", key=b"k", wait=False)
        await until(lambda: seen)
        await ctx.put(b"b", key=b"k", wait=False)
        await until(lambda: len(seen) == 2)
    assert seen == [[b"a"], [b"b"]]


async def test_records_waiting_together_come_together_at_most_max(batches):
    agent, seen, _ = batches
    async with agent.test_context() as ctx:
        for value in (b"1", b"2", b"3", b"4", b"5"):
            await ctx.put(value, key=b"k", wait=False)
        await until(lambda: sum(map(len, seen)) == 5)
    assert seen == [[b"1", b"2", b"3"], [b"4", b"5"]]


async def test_what_comes_while_the_agent_works_is_its_next_batch_acked_after_it(batches):
    agent, seen, hold = batches
    hold.clear()
    async with agent.test_context() as ctx:
        first = await ctx.put(b"a", key=b"k", wait=False)
        await until(lambda: seen)
        later = [await ctx.put(v, key=b"k", wait=False) for v in (b"b", b"c")]
        await asyncio.sleep(0.05)
        assert seen == [[b"a"]]  # still busy with the first batch: nothing acknowledged yet
        assert not first.message.acked
        hold.set()
        await until(lambda: len(seen) == 2)
        await until(lambda: first.message.acked)
        await until(lambda: all(e.message.acked for e in later))
    assert seen == [[b"a"], [b"b", b"c"]]
