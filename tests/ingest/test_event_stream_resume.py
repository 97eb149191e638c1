"""A stream driven by the real hub, no Kafka: what it sends, and the ids it gives."""

from __future__ import annotations

import asyncio

from test_event_stream_hub import A, B, hub, record

from ingest import stream_token
from ingest.event_stream import _Stream


class FakeTransport:
    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        raise AssertionError("not expected here")


class FakeRequest:
    transport = FakeTransport()


class FakeResponse:
    def __init__(self) -> None:
        self.body = b""

    async def write(self, data: bytes) -> None:
        self.body += data


def messages(body: bytes) -> list[dict]:
    out = []
    for block in body.decode().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            fields[name] = value
        if fields:
            out.append(fields)
    return out


async def run_stream(h, resume, feed, types=None) -> list[dict]:
    resp = FakeResponse()
    stream = _Stream(FakeRequest(), resp, h, A, types)
    task = asyncio.create_task(stream.run(resume))
    await asyncio.sleep(0)
    for partition, records in feed:
        h._fan_out(partition, records)
        await asyncio.sleep(0)
    for sub in h._subscribers.get(A.encode(), set()):
        sub.heartbeat_due = True
        sub.wake.set()
    await asyncio.sleep(0)
    h.end_all("shutdown")
    try:
        await task
    except Exception as exc:
        assert type(exc).__name__ == "_Gone"
    return messages(resp.body)


async def test_a_fresh_stream_starts_with_the_hubs_position_then_sends_each_event():
    h = hub()  # every partition at offset 10
    got = await run_stream(h, None, [(1, [record(10, A), record(11, B)]), (2, [record(10, A)])])
    assert stream_token.decode(got[0]["id"]) == (10, 10, 10) and "data" not in got[0]
    assert [(m["event"], stream_token.decode(m["id"])) for m in got[1:3]] == [
        ("bonus_awarded", (10, 11, 10)),
        ("bonus_awarded", (10, 12, 11)),  # B's record on partition 1 is passed over, counted
    ]
    # the heartbeat: a comment, and no id, the position being the last event's
    assert got[3:] == [{"": "heartbeat"}]


async def test_filtered_out_events_still_move_the_position_given_with_the_heartbeat():
    h = hub()
    got = await run_stream(
        h,
        None,
        [(0, [record(10, A, "bonus_awarded"), record(11, A, "bonus_spent")])],
        types=frozenset({"bonus_spent"}),
    )
    events = [m for m in got if "data" in m]
    assert [m["event"] for m in events] == ["bonus_spent"]
    assert stream_token.decode(events[0]["id"]) == (12, 10, 10)
    h2 = hub()
    got = await run_stream(
        h2, None, [(0, [record(10, A, "bonus_awarded")])], types=frozenset({"bonus_spent"})
    )
    assert [m for m in got if "data" in m] == []
    assert stream_token.decode(got[-1]["id"]) == (11, 10, 10)  # with the heartbeat


async def test_a_token_ahead_of_the_hub_skips_what_it_already_covers():
    # made by a replica that had read partition 1 up to offset 12 while this hub is at 10
    h = hub()
    resume = (10, 12, 10)
    got = await run_stream(
        h, resume, [(1, [record(10, A), record(11, A), record(12, A)]), (0, [record(10, A)])]
    )
    assert stream_token.decode(got[0]["id"]) == resume
    events = [m for m in got if "data" in m]
    assert [stream_token.decode(m["id"]) for m in events] == [(10, 13, 10), (11, 13, 10)]


async def test_a_token_of_fewer_partitions_reads_the_new_ones_from_their_start():
    h = hub(partitions=3)
    h.vector = [10, 10, 0]  # partition 2 is new and empty
    got = await run_stream(h, (10, 10), [(2, [record(0, A)])])
    assert stream_token.decode(got[0]["id"]) == (10, 10, 0)
    assert [stream_token.decode(m["id"]) for m in got if "data" in m] == [(10, 10, 1)]
