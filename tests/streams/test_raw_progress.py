"""streams.raw_progress.caught_up: a refund is refused as an unknown order only once every raw
record stored before it has been committed by the workers' group, on every partition."""

from __future__ import annotations

from aiokafka import TopicPartition

from streams.raw_progress import caught_up

A, B = TopicPartition("webhooks.raw", 0), TopicPartition("webhooks.raw", 1)


def test_committed_past_what_came_before_on_every_partition():
    assert caught_up({A: 7, B: 3}, {A: 7, B: 2}, {A: 9, B: 5})


def test_a_partition_behind_holds_it_back():
    assert not caught_up({A: 7, B: 1}, {A: 7, B: 2}, {A: 9, B: 5})


def test_a_partition_with_nothing_after_the_moment_must_be_committed_to_its_end():
    assert not caught_up({A: 7, B: 4}, {A: 7, B: None}, {A: 9, B: 5})
    assert caught_up({A: 7, B: 5}, {A: 7, B: None}, {A: 9, B: 5})


def test_a_partition_never_committed_holds_it_back_unless_nothing_came_before():
    assert not caught_up({A: 7}, {A: 7, B: 2}, {A: 9, B: 5})
    assert not caught_up({A: 7, B: -1}, {A: 7, B: None}, {A: 9, B: 5})
    assert caught_up({A: 7}, {A: 7, B: 0}, {A: 9, B: 5})  # all of B came after the moment
    assert caught_up({A: 7, B: -1}, {A: 7, B: None}, {A: 9, B: 0})  # B is empty
