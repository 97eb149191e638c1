"""Identifiers. Event ids derived from their inputs are what make re-processing idempotent."""

from __future__ import annotations

import os
import time
import uuid

# Fixed namespace for Kopilka's name-based (v5) ids; never change it: ids are stored forever.
NAMESPACE = uuid.UUID("6f1c2a8e-4d0b-5c7e-9a33-2b8f0e5d7c41")


def derived_id(*parts: object) -> str:
    """A deterministic id for the same inputs, e.g. (tenant, order, "bonus_awarded")."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(str(p) for p in parts)))


def new_event_id() -> str:
    """A time-ordered random id (UUIDv7 layout) for things that happen once, like a request."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))
