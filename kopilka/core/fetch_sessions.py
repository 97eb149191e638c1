"""Incremental fetch sessions (Kafka's KIP-227) for aiokafka's consumers.

aiokafka sends every fetch as a full one: each request names every partition the consumer is
assigned, and each response answers for every one of them, records or not. The worker is
assigned 32 partitions of eight topics (257 in all), so a record arriving on one partition costs
a round of 257 partition entries, encoded and decoded in Python by the worker's consumer thread
and handled again by the broker. Each webhook wakes that fetcher about three times (its raw
record, its command, its events and audit record), so at a few webhooks a second the thread
spent about 5 ms of CPU a webhook, and the `Prefer: wait` round trip queued behind it on a
machine of two cores.

With a session, as Kafka's Java consumer fetches, the broker remembers the partitions and
their fetch offsets: a request names only the partitions whose offset moved since the last one
(and those to forget), and the response only the partitions with records or news. Records, their
order, the offsets and what aiokafka does with a response are unchanged: aiokafka still sees
the full partition list (`SessionFetchRequest.topics`), which is what the broker's session holds
once the request is applied. Any failure, a session error from the broker, a lost response or a
cancelled fetch, drops the session: the next request is a full one that opens a new session.

`install(settings)` makes every aiokafka consumer started afterwards in this process use
sessions, unless KOPILKA_KAFKA_FETCH_SESSIONS is off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import aiokafka.consumer.consumer as aiokafka_consumer
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.structs import TopicPartition

from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings

log = get_logger(__name__)

_INITIAL_EPOCH = 0  # with session id 0: open a new session (a full fetch)
_MAX_EPOCH = 2**31 - 1
_SESSIONS_FROM = 7  # the first Fetch version with session_id and session_epoch
_STAMP_EVERY_S = 1.0

Sent = dict[tuple[str, int], tuple[int, int]]  # (topic, partition) -> (fetch offset, max bytes)


@dataclass
class FetchSession:
    """One broker's view of this consumer's session: what it holds and the next epoch."""

    id: int = 0
    epoch: int = _INITIAL_EPOCH
    held: Sent = field(default_factory=dict)

    def reset(self) -> None:
        self.id, self.epoch, self.held = 0, _INITIAL_EPOCH, {}

    def answered(self, request: SessionFetchRequest, response) -> None:
        """Apply a response to the request built from this session (one in flight a node)."""
        if request.sessionless:
            return
        error = getattr(response, "error_code", 0)
        if error:  # e.g. 70 FETCH_SESSION_ID_NOT_FOUND, 71 INVALID_FETCH_SESSION_EPOCH
            log.info("fetch_session_reset", session_id=self.id, error_code=error)
            self.reset()
        elif request.full:
            self.id = getattr(response, "session_id", 0)
            self.epoch = 1 if self.id else _INITIAL_EPOCH  # no session given: full again
            self.held = request.wanted if self.id else {}
        else:
            self.epoch = 1 if self.epoch >= _MAX_EPOCH else self.epoch + 1
            self.held = request.wanted


class SessionFetchRequest(FetchRequest):
    """aiokafka's fetch request, sent as part of a session.

    `topics` stays the full list (aiokafka matches the response's partitions against it);
    what goes on the wire is the difference from what the broker's session holds."""

    def __init__(self, base: FetchRequest, session: FetchSession) -> None:
        super().__init__(
            base._max_wait_ms,
            base._min_bytes,
            base._max_bytes,
            base._isolation_level,
            base.topics,
            rack_id=base._rack_id,
        )
        self.session = session
        self.wanted: Sent = {
            (topic, partition): (offset, max_bytes)
            for topic, partitions in base.topics
            for partition, offset, max_bytes in partitions
        }
        self.full = session.id == 0
        self.sessionless = False

    def build(self, request_struct_class):
        if request_struct_class.API_VERSION < _SESSIONS_FROM:
            self.sessionless = True  # an old broker: a full fetch, as aiokafka sends it
            self.session.reset()
            return super().build(request_struct_class)
        session, topics = self.session, self._topics
        if not self.full:
            held = session.held
            moved: dict[str, list[tuple[int, int, int]]] = {}
            for (topic, partition), (offset, max_bytes) in self.wanted.items():
                if held.get((topic, partition)) != (offset, max_bytes):
                    moved.setdefault(topic, []).append((partition, offset, max_bytes))
            self._topics = list(moved.items())
        try:
            struct = super().build(request_struct_class)
        finally:
            self._topics = topics
        struct.session_id = session.id
        struct.session_epoch = session.epoch
        if not self.full:
            gone: dict[str, list[int]] = {}
            for topic, partition in session.held.keys() - self.wanted.keys():
                gone.setdefault(topic, []).append(partition)
            struct.forgotten_topics_data = list(gone.items())
        return struct


class _SessionClient:
    """The fetcher's client, seeing each fetch's response before aiokafka does."""

    def __init__(self, client) -> None:
        self._client = client

    @property
    def cluster(self):  # read for every partition of every fetch: not through __getattr__
        return self._client.cluster

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    async def send(self, node_id, request, **kwargs):
        if not isinstance(request, SessionFetchRequest):
            return await self._client.send(node_id, request, **kwargs)
        try:
            response = await self._client.send(node_id, request, **kwargs)
        except BaseException:  # sent or not, applied or not: start a new session
            request.session.reset()
            raise
        request.session.answered(request, response)
        return response


class SessionFetcher(Fetcher):
    """aiokafka's Fetcher, fetching in sessions, one a broker."""

    def __init__(self, client, *args, **kwargs) -> None:
        super().__init__(_SessionClient(client), *args, **kwargs)
        self._sessions: dict[int, FetchSession] = {}
        self._stamped = 0.0

    async def _proc_fetch_request(self, assignment, node_id, request):
        session = self._sessions.setdefault(node_id, FetchSession())
        request = SessionFetchRequest(request, session)
        result = await super()._proc_fetch_request(assignment, node_id, request)
        if not request.full and assignment.active:
            self._stamp(assignment, request)
        return result

    def _stamp(self, assignment, request: SessionFetchRequest) -> None:
        """Mark the partitions an answer left out as fetched, at most once a second: Faust's
        livelock check logs an error for a partition with no fetch for a while."""
        now = time.time()
        if now - self._stamped < _STAMP_EVERY_S:
            return
        self._stamped, now_ms = now, int(1000 * now)
        for topic, partition in request.wanted:
            state = assignment.state_value(TopicPartition(topic, partition))
            if state is not None:
                state.timestamp = now_ms


def install(settings: Settings) -> None:
    """Every aiokafka consumer started from now on in this process fetches in sessions (or, with
    the setting off, as aiokafka does)."""
    aiokafka_consumer.Fetcher = SessionFetcher if settings.kafka_fetch_sessions else Fetcher
