"""streams.consumer_thread: the commit keeps assigned partitions, reading the assignment once."""

from __future__ import annotations

from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from faust.types import TP

from streams.consumer_thread import ConsumerThread


class _Consumer:
    def __init__(self, error: Exception | None = None) -> None:
        self.committed: list[dict] = []
        self.error = error

    async def commit(self, offsets) -> None:
        if self.error is not None:
            raise self.error
        self.committed.append(offsets)


def _thread(consumer: _Consumer, assigned: set[TP]) -> tuple[ConsumerThread, list, list]:
    thread = ConsumerThread.__new__(ConsumerThread)  # no app, no loop: only _commit is used
    calls, crashes = [], []
    thread._ensure_consumer = lambda: consumer

    def assignment() -> set[TP]:
        calls.append(1)
        return set(assigned)

    async def crash(exc: BaseException) -> None:
        crashes.append(exc)

    thread.assignment = assignment
    thread.crash = crash
    thread.tp_last_committed_at = {}
    thread.log = type("Log", (), {"exception": lambda *a, **k: None})()
    return thread, calls, crashes


async def test_only_assigned_partitions_are_committed_and_the_assignment_read_once():
    ours = {TP("events", p) for p in range(32)}
    offsets = {tp: 10 + tp.partition for tp in ours} | {TP("events", 40): 7}  # no longer ours
    consumer = _Consumer()
    thread, calls, crashes = _thread(consumer, ours)
    assert await thread._commit(offsets) is True
    assert consumer.committed == [
        {TopicPartition("events", p): OffsetAndMetadata(10 + p, "") for p in range(32)}
    ]
    assert len(calls) == 1
    assert set(thread.tp_last_committed_at) == ours
    assert not crashes


async def test_a_commit_after_a_rebalance_is_dropped_other_failures_crash_as_in_faust():
    tp = TP("events", 0)
    rebalanced = _Consumer(CommitFailedError("already rebalanced"))
    thread, _, crashes = _thread(rebalanced, {tp})
    assert await thread._commit({tp: 1}) is False
    assert not crashes
    broken = _Consumer(RuntimeError("boom"))
    thread, _, crashes = _thread(broken, {tp})
    assert await thread._commit({tp: 1}) is False
    assert [type(c) for c in crashes] == [RuntimeError]


async def test_a_commit_cut_off_by_the_broker_closing_its_connection_is_not_a_crash():
    tp = TP("events", 0)
    closed = RuntimeError(
        "unable to perform operation on <TCPTransport closed=True reading=False 0x7f>;"
        " the handler is closed"
    )  # uvloop's, seen when a broker was killed as a commit went out
    thread, _, crashes = _thread(_Consumer(closed), {tp})
    warnings = []
    thread.log.warning = lambda *args, **kwargs: warnings.append(args)
    assert await thread._commit({tp: 1}) is False  # not committed: the next commit makes it good
    assert not crashes and len(warnings) == 1
