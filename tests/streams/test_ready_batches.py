"""`streams.ready_batches`: a batch is what is waiting when the agent is free, at most `max_`;
each event acknowledged once the agent asks for the next batch. Driven through Faust's
`agent.test_context()` on an app made by `create_app` (no broker)."""

from __future__ import annotations

import asyncio
import contextlib

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


async def test_what_was_collected_goes_out_when_a_rebalance_empties_the_queue(stream_app):
    """A record collected while another waited behind it, then the queue emptied before that
    one reached the stream (a partition revoked): the backstop hands the first out, so it is
    acknowledged (Faust waits for that before the rebalance goes on)."""
    seen: list[list[bytes]] = []
    queued = asyncio.Event()

    async def record(stream):
        def revoke_after_first(value):
            if value == b"1":  # what Faust does to the stream's queue on a revocation
                stream.channel.queue.clear()
            return value

        await queued.wait()  # both records wait in the queue before the stream takes one
        async with contextlib.aclosing(ready_batches(stream, MAX)) as batches:
            first = asyncio.ensure_future(anext(batches))
            await asyncio.sleep(0)  # the collector is on the stream now
            stream.add_processor(revoke_after_first)  # after it
            seen.append([event.value for event in await first])
            async for batch in batches:
                seen.append([event.value for event in batch])

    agent = stream_app.app.agent(stream_app.topics.webhooks_audit, name="revoked")(record)
    async with agent.test_context() as ctx:
        first = await ctx.put(b"1", key=b"k", wait=False)
        await ctx.put(b"2", key=b"k", wait=False)
        queued.set()
        await until(lambda: seen)
        await until(lambda: first.message.acked)
    assert seen == [[b"1"]]


async def test_an_agent_that_crashed_leaves_the_stream_to_the_next_one(stream_app):
    """Faust restarts a crashed agent on the same stream: the crashed one's collector is gone
    (aclosing), so the records after the crash come to the new one, each once."""
    seen: list[list[bytes]] = []
    crash = True

    async def record(stream):
        nonlocal crash
        async with contextlib.aclosing(ready_batches(stream, MAX)) as batches:
            async for batch in batches:
                seen.append([event.value for event in batch])
                if crash:
                    crash = False
                    break  # as an exception out of the agent's body would leave it
        assert stream.enable_acks  # and its collector no longer among the processors:
        assert all(getattr(p, "__name__", "") != "collect" for p in stream._processors)
        async with contextlib.aclosing(ready_batches(stream, MAX)) as batches:
            async for batch in batches:
                seen.append([event.value for event in batch])

    agent = stream_app.app.agent(stream_app.topics.webhooks_audit, name="restarted")(record)
    async with agent.test_context() as ctx:
        await ctx.put(b"1", key=b"k", wait=False)
        await until(lambda: seen)
        later = await ctx.put(b"2", key=b"k", wait=False)
        await until(lambda: len(seen) == 2)
        await until(lambda: later.message.acked)
    assert seen == [[b"1"], [b"2"]]
