"""streams.outbound.read_event reads ids as uuid.UUID does, the usual spelling without it."""

from __future__ import annotations

import uuid

import orjson
import pytest

from streams.outbound import BadRecord, read_event

GOOD = "8371bc85-79e8-5acb-93b0-b4616c7dea7c"


def _raw(event_id: object, tenant_id: object = GOOD) -> bytes:
    return orjson.dumps({"event_id": event_id, "tenant_id": tenant_id, "type": "bonus_awarded"})


def _uuid_reads(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "event_id",
    [
        GOOD,
        GOOD.upper(),
        "{" + GOOD + "}",
        "urn:uuid:" + GOOD,
        GOOD.replace("-", ""),
        GOOD + "\n",
        GOOD[:-1],
        GOOD[:-1] + "g",
        "８371bc85-79e8-5acb-93b0-b4616c7dea7c",  # a full-width digit
        " " + GOOD,
        12345,
        "",
    ],
)
def test_ids_are_accepted_exactly_when_uuid_reads_them(event_id):
    for raw in (_raw(event_id), _raw(GOOD, event_id)):
        if _uuid_reads(str(event_id)):
            assert read_event(raw)["type"] == "bonus_awarded"
        else:
            with pytest.raises(BadRecord):
                read_event(raw)
