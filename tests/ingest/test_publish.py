"""The raw record the ingress writes is exactly a RawEnvelope, as the worker reads it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest.publish import raw_record
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
