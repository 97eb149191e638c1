"""The raw record the ingress writes is exactly a RawEnvelope, as the worker reads it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from aiokafka.errors import KafkaTimeoutError

from ingest.publish import Deadline, raw_record
from schemas.messages import RawEnvelope

FIELDS = {
    "event_id": "0192f3c4-1111-7222-8333-444455556666",
    "tenant_id": "6f1c2a8e-4d0b-5c7e-9a33-2b8f0e5d7c41",
    "received_at": datetime(2026, 11, 27, 8, 30, 1, 234567, tzinfo=UTC),
}


@pytest.mark.parametrize(
    ("body", "content_type", "wait"),
    [
        (b'{"action":"purchase","payload":{"email":"a@b.ru","amount":1.5}}', "application/json", 0),
        ("Name=Анна&payment[amount]=10".encode(), "application/x-www-form-urlencoded", 1),
        ("Name=Анна".encode("cp1251"), "application/x-www-form-urlencoded; charset=cp1251", 0),
        (b'{"text":"\\u0000 \xe2\x80\xa8 \\"quoted\\""}', None, 1),
        (b"", "text/plain", 0),
    ],
)
def test_raw_record_reads_back_as_the_envelope(body, content_type, wait):
    record = raw_record(body, content_type=content_type, wait=bool(wait), **FIELDS)
    expected = RawEnvelope.wrap(body, content_type=content_type, wait=bool(wait), **FIELDS)
    assert RawEnvelope.from_bytes(record) == expected
    assert RawEnvelope.from_bytes(record).raw_body() == body


async def test_deadline_relays_results_and_errors():
    deadline = Deadline(1.0, tick_s=0.01)
    loop = asyncio.get_running_loop()
    done, failed = loop.create_future(), loop.create_future()
    loop.call_soon(done.set_result, "acked")
    loop.call_soon(failed.set_exception, KafkaTimeoutError())
    assert await deadline.wait(done) == "acked"
    with pytest.raises(KafkaTimeoutError):
        await deadline.wait(failed)


async def test_deadline_times_out_what_never_completes_and_only_that():
    deadline = Deadline(0.2, tick_s=0.02)
    loop = asyncio.get_running_loop()
    never, late = loop.create_future(), loop.create_future()
    loop.call_later(0.1, late.set_result, "in time")
    started = time.monotonic()
    results = await asyncio.gather(
        deadline.wait(never), deadline.wait(late), return_exceptions=True
    )
    assert isinstance(results[0], TimeoutError) and results[1] == "in time"
    assert 0.2 <= time.monotonic() - started < 0.5
    assert not never.done()  # left alone: aiokafka completes its own futures
    # later awaits start their own clock
    again = loop.create_future()
    loop.call_later(0.05, again.set_result, 1)
    assert await deadline.wait(again) == 1
