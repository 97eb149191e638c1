"""The admin dead-letter listing's query string: every bad value is a 422 naming its field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from ingest.admin_dead_letters import _Invalid, filters_of
from kopilka.directory.dead_letters import Filters, encode_cursor


def test_no_query_lists_everything_fifty_at_a_time():
    assert filters_of({}) == (Filters(), 50)


def test_a_full_query():
    at, last = datetime(2026, 11, 27, 5, tzinfo=UTC), uuid.uuid4()
    query = {
        "tenant_id": "t",
        "stage": "sink.postgres",
        "code": "c",
        "since": "2026-11-27T08:00:00+03:00",
        "redriven": "false",
        "limit": "7",
        "before": encode_cursor(at, last),
    }
    assert filters_of(query) == (
        Filters(
            tenant_id="t",
            stage="sink.postgres",
            code="c",
            since=at,
            redriven=False,
            before=(at, last),
        ),
        7,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "²"),
        ("limit", "9" * 5000),
        ("limit", "-1"),
        ("stage", "nowhere"),
        ("since", "yesterday"),
        ("since", "2026-11-27T08:00:00"),
        ("redriven", "maybe"),
        ("redriven", ""),
        ("before", "2026-11-27T05:00:00+00:00~x"),
        ("before", "²~" + str(uuid.uuid4())),
    ],
)
def test_bad_values_name_their_field(field, value):
    with pytest.raises(_Invalid) as err:
        filters_of({field: value})
    assert err.value.field == field
