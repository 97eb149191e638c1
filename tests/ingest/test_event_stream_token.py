"""Resume tokens of the event stream: a compact, exact round trip; anything else refused."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import stream_token
from ingest.stream_token import InvalidToken, decode, encode

OFFSETS = st.lists(st.integers(min_value=0, max_value=2**63 - 1), max_size=64)


@given(OFFSETS)
def test_round_trip(offsets):
    assert decode(encode(offsets)) == tuple(offsets)


def test_tokens_are_url_and_header_safe():
    token = encode([0, 17, 2**40, 5])
    assert token.isascii() and all(c.isalnum() or c in "-_" for c in token)


def test_thirty_two_partitions_in_the_millions_stay_short():
    # keys spread evenly, so partitions' offsets stay close to each other
    offsets = [3_000_000 + (p * 37) % 100 for p in range(32)]
    assert len(encode(offsets)) < 64  # plain varints would take 132 characters


def test_empty_vector_round_trips():
    assert decode(encode([])) == ()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not base64!",
        "x" * (stream_token.MAX_LENGTH + 1),
        base64.urlsafe_b64encode(b"\x02\x01\x00\x00").decode(),  # unknown version
        base64.urlsafe_b64encode(b"\x01\x02\x00\x00").decode(),  # says 2 partitions, has 1
        base64.urlsafe_b64encode(b"\x01\x01\x00\x00\x00").decode(),  # a trailing byte
        base64.urlsafe_b64encode(b"\x01\x01\x05\x01").decode(),  # base is not the minimum
        base64.urlsafe_b64encode(b"\x01\x01\x00" + b"\xff" * 10 + b"\x01").decode(),  # > int64
        base64.urlsafe_b64encode(b"\x01\xff\xff\x03").decode(),  # absurd partition count
    ],
)
def test_foreign_tokens_are_refused(token):
    with pytest.raises(InvalidToken):
        decode(token)


def test_a_token_with_its_padding_still_reads():
    token = encode([1, 2, 3])
    assert decode(token + "=" * (-len(token) % 4)) == (1, 2, 3)
