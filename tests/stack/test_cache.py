"""The bounded TTL cache: membership, expiry, eviction."""

from __future__ import annotations

import time

from kopilka.core.cache import TTLCache


def test_membership_says_what_is_there_and_what_is_not():
    cache: TTLCache[str, int | None] = TTLCache(maxsize=2, ttl_s=60)
    assert "a" not in cache
    cache.set("a", 1)
    cache.set("n", None)  # a stored None is there all the same
    assert "a" in cache and "n" in cache
    cache.set("b", 2)  # over maxsize: the least recently used ("a") goes
    assert "a" not in cache and cache.get("a") is None and cache.get("b") == 2


def test_an_expired_entry_is_gone():
    cache: TTLCache[str, int] = TTLCache(maxsize=8, ttl_s=0.01)
    cache.set("a", 1)
    time.sleep(0.02)
    assert "a" not in cache and cache.get("a", 7) == 7 and len(cache) == 0
