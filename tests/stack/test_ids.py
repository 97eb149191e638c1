"""kopilka.core.ids.derived_id must stay byte-identical to uuid5 over the joined parts: ids are
stored forever, and a different id for the same input would award twice on a replay."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from kopilka.core.ids import NAMESPACE, derived_id, new_event_id


def reference(*parts: object) -> str:
    """The original definition, kept here as the oracle."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(str(p) for p in parts)))


# Ids written by the uuid.uuid5 implementation before it was made faster: literal, so a change
# of the namespace or of the joining would fail here even if the oracle changed with it.
GOLDEN = [
    (
        ("0b6f3d52-31c9-4d7e-9d55-6c3f1f0a9b10", "ORDER-1", "bonus_awarded"),
        "8371bc85-79e8-5acb-93b0-b4616c7dea7c",
    ),
    (("t", "customer", "email", "anna@example.com"), "57d40820-5e23-500b-98b0-879fc723c876"),
    (("evt", 0), "bebe6d37-1e28-5e0a-9896-aad979a70538"),
    (("unreadable", b"\xff{"), "6ce3534c-9eed-5f6d-a85b-0911c9adf50d"),
    (("Заказ №1 🎁",), "ee7e5063-a7ef-5338-8a3c-4d1494a98fdc"),
    ((), "7e11ed3e-3d82-52f0-9f95-5b755d25e3b7"),
]


@pytest.mark.parametrize(("parts", "expected"), GOLDEN)
def test_golden_ids(parts, expected):
    assert derived_id(*parts) == expected


def test_every_kind_of_part_matches_uuid5():
    when = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    samples = [
        ("",),
        ("", ""),
        ("a\x1fb",),
        ("a", "b"),
        (uuid.UUID(int=0), "x"),
        (Decimal("500.00"), Decimal("1E+3")),
        (when, when.isoformat()),
        (None, True, 3.5, -7),
        ("ё" * 1000,),
        ("\U0001f600", "\u0000", "\t\n"),
        (b"bytes", bytearray(b"\x00\x01")),
    ]
    for parts in samples:
        assert derived_id(*parts) == reference(*parts), parts


def test_many_random_inputs_match_uuid5():
    rng = random.Random(20261127)
    alphabet = "abcXYZ019-_:|@. \x1fжЁ€🎁"
    seen = set()
    for _ in range(20_000):
        parts = [
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
            if rng.random() < 0.8
            else rng.randrange(-(10**12), 10**12)
            for _ in range(rng.randrange(0, 6))
        ]
        got = derived_id(*parts)
        assert got == reference(*parts), parts
        seen.add(got[14] + got[19])
    # the version digit is always 5, the variant digit every one of 8, 9, a, b
    assert {s[0] for s in seen} == {"5"} and {s[1] for s in seen} == set("89ab")


def test_unencodable_text_fails_as_before():
    with pytest.raises(UnicodeEncodeError):
        reference("\ud800")
    with pytest.raises(UnicodeEncodeError):
        derived_id("\ud800")


def test_new_event_ids_are_version_7_and_distinct():
    ids = {new_event_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert all(uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)


def test_new_event_ids_carry_the_millisecond_they_were_made_in_order():
    before = time.time_ns() // 1_000_000
    first, second = new_event_id(), new_event_id()
    after = time.time_ns() // 1_000_000
    ms = uuid.UUID(first).int >> 80
    assert before <= ms <= after
    assert (uuid.UUID(first).int >> 80) <= (uuid.UUID(second).int >> 80)
