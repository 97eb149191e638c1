from __future__ import annotations

from sinks.pacing import ChatPacer, TokenBucket


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_bot_bucket_allows_thirty_a_second_evenly():
    clock = Clock()
    bucket = TokenBucket(30, clock=clock)
    sent = 0
    for _ in range(1000):  # one simulated second in 1 ms steps
        if bucket.try_take():
            sent += 1
        clock.now += 0.001
    assert 30 <= sent <= 31


def test_one_message_per_chat_per_interval_and_chats_are_independent():
    clock = Clock()
    pacer = ChatPacer(1.0, clock=clock)
    assert pacer.wait_time(1) == 0
    pacer.sent(1)
    assert pacer.wait_time(1) == 1.0
    assert pacer.wait_time(2) == 0  # another chat is not held back
    clock.now += 0.6
    assert round(pacer.wait_time(1), 3) == 0.4
    clock.now += 0.4
    assert pacer.wait_time(1) == 0


def test_retry_after_pauses_only_that_chat():
    clock = Clock()
    pacer = ChatPacer(1.0, clock=clock)
    pacer.pause(7, 5)
    assert pacer.wait_time(7) == 5 and pacer.wait_time(8) == 0
    pacer.sent(7)  # a send cannot shorten a pause
    assert pacer.wait_time(7) == 5
    clock.now += 6
    pacer.forget_idle()
    assert pacer.wait_time(7) == 0
