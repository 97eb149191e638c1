"""A small bounded TTL cache for hot look-ups (tenants by credential, customers by identity)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING = object()
_ABSENT = object()  # what __contains__ asks get() for: never a stored value, never None


class TTLCache(Generic[K, V]):
    def __init__(self, maxsize: int, ttl_s: float) -> None:
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.maxsize, self.ttl_s = maxsize, ttl_s

    def get(self, key: K, default=_MISSING):
        item = self._data.get(key)
        if item is None or item[0] < time.monotonic():
            if item is not None:
                del self._data[key]
            return None if default is _MISSING else default
        self._data.move_to_end(key)
        return item[1]

    def __contains__(self, key: K) -> bool:
        return self.get(key, _ABSENT) is not _ABSENT

    def set(self, key: K, value: V) -> None:
        self._data[key] = (time.monotonic() + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
