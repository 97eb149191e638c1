"""Resume tokens of the event stream: a position in every partition of `loyalty.events`.

A token is the vector of next offsets to read, partition 0 first. Offsets of one topic grow at
about the same pace on every partition (keys spread evenly), so the vector is written as its
smallest offset and each partition's distance from it, all as unsigned LEB128 varints, behind a
version byte, then base64url without padding: 32 partitions at offsets in the millions take about
50 characters instead of 250. The token is opaque to clients; only this module reads it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

VERSION = 1
MAX_PARTITIONS = 4096  # far above any real topic; bounds what a hostile token can make us do
MAX_LENGTH = 64 * 1024


class InvalidToken(ValueError):
    """The token was not made by this module (or is from a future version)."""


def encode(offsets: Sequence[int]) -> str:
    base = min(offsets, default=0)
    out = bytearray((VERSION,))
    _varint(out, len(offsets))
    _varint(out, base)
    for offset in offsets:
        _varint(out, offset - base)
    return base64.urlsafe_b64encode(bytes(out)).rstrip(b"=").decode("ascii")


def decode(token: str) -> tuple[int, ...]:
    if not token or len(token) > MAX_LENGTH:
        raise InvalidToken("empty or too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("not base64url") from exc
    if not raw or raw[0] != VERSION:
        raise InvalidToken("unknown version")
    pos = 1
    count, pos = _read_varint(raw, pos)
    if count > MAX_PARTITIONS:
        raise InvalidToken("too many partitions")
    base, pos = _read_varint(raw, pos)
    offsets = []
    for _ in range(count):
        delta, pos = _read_varint(raw, pos)
        offsets.append(base + delta)
    if pos != len(raw):
        raise InvalidToken("trailing bytes")
    if count and min(offsets) != base:
        raise InvalidToken("not a canonical encoding")
    return tuple(offsets)


def _varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("offsets are never negative")
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(raw):
            raise InvalidToken("truncated")
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:  # Kafka offsets are int64
            raise InvalidToken("offset out of range")
