"""kopilka.core.heap: what exists once started leaves the collector's full passes, and the
youngest generation is collected less often; the collector still frees cycles made later."""

from __future__ import annotations

import gc
import weakref

import pytest

from kopilka.core.heap import YOUNG_THRESHOLD, freeze_started


@pytest.fixture
def collector():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    pass


def test_the_started_heap_is_frozen_and_later_cycles_still_collected(collector):
    frozen = freeze_started()
    assert frozen == gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    later = Node()
    later.self = later  # a cycle made after the freeze
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None
