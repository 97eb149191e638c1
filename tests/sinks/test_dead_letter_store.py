"""The SQL-free parts of the dead-letter store: rows, filters, cursors, views."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from kopilka.directory.dead_letters import (
    Filters,
    StoredDeadLetter,
    clean_text,
    decode_cursor,
    encode_cursor,
    row_of,
    tenant_text,
)
from schemas.dead_letters import DeadLetter

TENANT = "0b7c3c0e-8a5e-4f4e-9a59-2f1f7a3e9d10"


def letter(**overrides) -> DeadLetter:
    fields = {
        "stage": "normalize",
        "source_topic": "webhooks.raw",
        "partition": 3,
        "offset": 41,
        "key": TENANT.encode(),
        "value": b'{"v":1,"body":"\xff"}',
        "code": "internal_error",
        "reason": "boom",
        "tenant_id": TENANT,
    }
    return DeadLetter.of(**{**fields, **overrides})


def test_a_row_keeps_the_original_bytes_and_derives_its_id_from_the_source():
    dl = letter()
    row = row_of(dl)
    assert row[0] == uuid.UUID(dl.dead_letter_id)
    assert row[5] == TENANT.encode() and row[6] == b'{"v":1,"body":"\xff"}'
    assert row_of(letter(reason="other"))[0] == row[0]  # same source record, same id
    assert row_of(letter(offset=42))[0] != row[0]


def test_text_postgres_would_refuse_is_made_safe():
    assert clean_text("a\x00b") == "a\\x00b"
    assert clean_text("x\ud800y") == "x\\ud800y"
    assert clean_text(None) is None
    row = row_of(letter(reason="refund \x00 id", error="E\x00"))
    assert "\x00" not in row[10] and "\x00" not in row[11]


@pytest.mark.parametrize(
    ("given", "stored"),
    [(TENANT.upper(), TENANT), ("", None), (None, None), ("not-a-uuid\x00", "not-a-uuid\\x00")],
)
def test_tenant_ids_are_stored_canonical(given, stored):
    assert tenant_text(given) == stored


def test_filters_build_a_parameterised_where_clause():
    assert Filters().where() == ("", [])
    at = datetime(2026, 11, 27, tzinfo=UTC)
    last = uuid.uuid4()
    where, args = Filters(
        tenant_id=TENANT.upper(),
        stage="ledger",
        code="x",
        since=at,
        redriven=False,
        before=(at, last),
    ).where()
    assert where == (
        " WHERE tenant_id = $1 AND stage = $2 AND code = $3 AND dead_at >= $4"
        " AND redriven_at IS NULL AND (dead_at, id) < ($5, $6)"
    )
    assert args == [TENANT, "ledger", "x", at, at, last]
    assert Filters(redriven=True).where() == (" WHERE redriven_at IS NOT NULL", [])


def test_cursor_round_trips_and_refuses_anything_else():
    at, dl_id = datetime(2026, 11, 27, 5, 1, 2, 345678, tzinfo=UTC), uuid.uuid4()
    assert decode_cursor(encode_cursor(at, dl_id)) == (at, dl_id)
    assert "+" not in encode_cursor(at, dl_id) and ":" not in encode_cursor(at, dl_id)
    for bad in ("", "x", "123~nope", "2026-11-27T05:01:02~" + str(dl_id), f"-1~{dl_id}"):
        with pytest.raises(ValueError):
            decode_cursor(bad)


def test_views_show_the_value_as_text_only_when_it_is_utf8():
    dl = letter()
    stored = StoredDeadLetter(
        id=dl.dead_letter_id,
        stage=dl.stage,
        source_topic=dl.source_topic,
        partition=dl.partition,
        offset=dl.offset,
        key=dl.key,
        value=dl.value,
        tenant_id=TENANT,
        request_id=None,
        code=dl.code,
        reason=dl.reason,
        error=None,
        attempts=1,
        dead_at=dl.dead_at,
        redriven_at=None,
        redrive_count=0,
    )
    short = stored.view()
    assert "value_b64" not in short and short["value_bytes"] == len(dl.value)
    assert short["source"] == {"topic": "webhooks.raw", "partition": 3, "offset": 41}
    full = stored.view(full=True)
    assert base64.b64decode(full["value_b64"]) == dl.value and full["value_text"] is None
    ok = StoredDeadLetter(**{**stored.__dict__, "value": b'{"a": "\xd0\xb9"}'})
    assert ok.view(full=True)["value_text"] == '{"a": "й"}'
