"""`streams.producer_buffer.EbbingBuffer`: the conductor's wait ends once the buffer is back
under its limit, or after 0.1 s without a record sent; a flush once it is empty."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from faust.transport.producer import ProducerBuffer

from streams.producer_buffer import STALL_S, ebbing


class Channel:
    """What the buffer's task publishes to: records each message; `stuck` never returns."""

    def __init__(self) -> None:
        self.published: list[int] = []

    async def publish_message(self, fut, wait: bool = False) -> None:
        if fut.n < 0:
            await asyncio.Event().wait()  # a send that never ends: the buffer stalls
        self.published.append(fut.n)


def message(channel: Channel, n: int) -> SimpleNamespace:
    return SimpleNamespace(n=n, message=SimpleNamespace(channel=channel))


@pytest.fixture
async def buffer():
    buf = ProducerBuffer(loop=asyncio.get_running_loop())
    buf.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    ebbing(buf)
    await buf.start()
    yield buf
    await buf.stop()


async def test_the_wait_ends_when_the_buffer_is_under_its_limit_everything_sent_in_order(buffer):
    channel = Channel()
    for n in range(3 * buffer.max_messages):
        buffer.put(message(channel, n))
    await buffer.wait_until_ebb()
    assert buffer.size <= buffer.max_messages
    await buffer.flush()
    assert buffer.size == 0
    assert channel.published == list(range(3 * buffer.max_messages))


async def test_a_buffer_under_its_limit_is_not_waited_for(buffer):
    channel = Channel()
    buffer.put(message(channel, 0))
    await buffer.wait_until_ebb()
    assert buffer.size == 1  # not sent yet: the buffer's task has not run
    await buffer.flush()
    assert channel.published == [0]


async def test_a_stalled_buffer_is_waited_for_no_longer_than_faust_did(buffer):
    channel = Channel()
    buffer.put(message(channel, -1))  # its send never ends
    for n in range(2 * buffer.max_messages):
        buffer.put(message(channel, n))
    started = time.monotonic()
    await buffer.wait_until_ebb()
    assert STALL_S <= time.monotonic() - started < 2.0
    assert buffer.size > buffer.max_messages and channel.published == []
    while not buffer.pending.empty():  # what a stop would refuse to leave unsent
        buffer.pending.get_nowait()
