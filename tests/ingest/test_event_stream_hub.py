"""The shared tail's fan-out: by tenant, with the position at each record; slow streams dropped."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from ingest import stream_hub, stream_token
from ingest.stream_hub import EventHub
from kopilka.core.settings import Settings

A, B = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"


def record(offset: int, tenant: str, kind: str = "bonus_awarded", owner: str | None = None):
    value = orjson.dumps({"type": kind, "tenant_id": owner or tenant, "event_id": f"e{offset}"})
    return SimpleNamespace(offset=offset, key=f"{tenant}:c{offset}".encode(), value=value)


def hub(partitions: int = 3) -> EventHub:
    h = EventHub(Settings())
    h.vector = [10] * partitions
    return h


def test_records_go_to_their_tenants_subscribers_with_the_position_after_each():
    h = hub()
    sub_a, start = h.subscribe(A)
    sub_b, _ = h.subscribe(B)
    assert start == (10, 10, 10)
    h._fan_out(1, [record(10, A), record(11, B), record(12, A)])
    h._fan_out(2, [record(10, B)])
    got_a, got_b = sub_a.drain(), sub_b.drain()
    assert [(i.partition, i.offset) for i in got_a] == [(1, 10), (1, 12)]
    assert [(i.partition, i.offset) for i in got_b] == [(1, 11), (2, 10)]
    assert [i.vector for i in got_a] == [(10, 11, 10), (10, 13, 10)]
    assert got_b[1].vector == (10, 13, 11)
    assert stream_token.decode(got_a[1].token()) == (10, 13, 10)
    assert h.vector == [10, 13, 11]


def test_records_of_tenants_nobody_follows_only_advance_the_position():
    h = hub()
    sub, _ = h.subscribe(A)
    h._fan_out(0, [record(10, B), record(11, B)])
    assert sub.drain() == [] and h.vector[0] == 12


def test_a_value_of_another_tenant_than_its_key_is_never_sent():
    h = hub()
    sub, _ = h.subscribe(A)
    h._fan_out(0, [record(10, A, owner=B), record(11, A)])
    assert [i.offset for i in sub.drain()] == [11]


def test_a_stream_too_far_behind_is_dropped_and_the_others_go_on(monkeypatch):
    monkeypatch.setattr(stream_hub, "QUEUE_LIMIT", 3)
    h = hub()
    slow, _ = h.subscribe(A)
    fast, _ = h.subscribe(A)
    for offset in range(10, 16):
        h._fan_out(0, [record(offset, A)])
        fast.drain()  # this one keeps up
    assert slow.ended == "too_slow" and len(slow.items) == 3  # what it holds is still sent
    assert fast.ended is None and h.streams == 1
    h._fan_out(0, [record(16, A)])
    assert [i.offset for i in fast.drain()] == [16]


def test_shutdown_ends_every_stream():
    h = hub()
    subs = [h.subscribe(A)[0], h.subscribe(B)[0]]
    h.end_all("shutdown")
    assert [s.ended for s in subs] == ["shutdown", "shutdown"] and h.streams == 0
    assert all(s.wake.is_set() for s in subs)


def test_a_stream_stuck_writing_to_a_client_that_stopped_reading_is_cut_off(monkeypatch):
    monkeypatch.setattr(stream_hub, "QUEUE_LIMIT", 1)
    h = hub()
    stuck, _ = h.subscribe(A)
    aborted = []
    stuck.writing, stuck.abort = True, lambda: aborted.append(True)
    h._fan_out(0, [record(10, A), record(11, A)])
    assert stuck.ended == "too_slow" and aborted == [True]


def test_a_stream_not_writing_is_ended_without_cutting_the_connection(monkeypatch):
    monkeypatch.setattr(stream_hub, "QUEUE_LIMIT", 1)
    h = hub()
    sub, _ = h.subscribe(A)
    sub.abort = lambda: pytest.fail("cut while it could still send what it holds")
    h._fan_out(0, [record(10, A), record(11, A)])
    assert sub.ended == "too_slow"
