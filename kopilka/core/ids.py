"""Identifiers. Event ids derived from their inputs are what make re-processing idempotent."""

from __future__ import annotations

import os
import time
import uuid
from hashlib import sha1

# Fixed namespace for Kopilka's name-based (v5) ids; never change it: ids are stored forever.
NAMESPACE = uuid.UUID("6f1c2a8e-4d0b-5c7e-9a33-2b8f0e5d7c41")
_NAMESPACE_BYTES = NAMESPACE.bytes
# RFC 4122 variant: the top two bits of the 17th hex digit are 10.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def derived_id(*parts: object) -> str:
    """A deterministic id for the same inputs, e.g. (tenant, order, "bonus_awarded").

    Exactly `str(uuid.uuid5(NAMESPACE, "\\x1f".join(map(str, parts))))` (a test pins it: a
    different id for the same input would award twice on a replay), computed on the SHA-1
    hex digest directly: a third of the time, without building UUID objects."""
    name = "\x1f".join(map(str, parts)).encode()
    x = sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def new_event_id() -> str:
    """A time-ordered random id (UUIDv7 layout) for things that happen once, like a request.

    48 bits of Unix milliseconds, the version, 74 random bits and the variant, spelt as bytes:
    one per accepted webhook, so it is kept cheap (uuid.UUID(int=...) cost twice as much)."""
    b = bytearray((time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF).to_bytes(6, "big"))
    b += os.urandom(10)
    b[6] = 0x70 | b[6] & 0x0F
    b[8] = 0x80 | b[8] & 0x3F
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
