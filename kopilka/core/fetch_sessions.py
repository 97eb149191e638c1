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
(and those to forget), and the response only the partitions with records or news (an error, a
new highwater). The broker moves a partition's fetch offset only when a request names it, so
records, their order and the offsets are what full fetches give; aiokafka still sees the full
partition list (`SessionFetchRequest.topics`), which is what the broker's session holds once the
request is applied. What a full fetch refreshed for every partition, a session sends only when
it changes, so the session starts again (a full fetch, closing the old one) whenever aiokafka
could have missed it: a new assignment (its partitions have no highwater yet), an answer entry
aiokafka set aside (its position had moved), a failed or cancelled fetch, a session error or an
answer that does not fit the session.

`install(settings)` makes every aiokafka consumer started afterwards in this process use
sessions, unless KOPILKA_KAFKA_FETCH_SESSIONS is off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import aiokafka.consumer.consumer as aiokafka_consumer
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.structs import TopicPartition

from kopilka.core.kafka import closed_connection
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings

log = get_logger(__name__)

_INITIAL_EPOCH = 0  # with session id 0: open a new session (a full fetch)
_MAX_EPOCH = 2**31 - 1
_SESSIONS_FROM = 7  # the first Fetch version with session_id and session_epoch
_SESSION_NOT_FOUND = 70  # FETCH_SESSION_ID_NOT_FOUND: nothing left on the broker to close
_STAMP_EVERY_S = 1.0

Sent = dict[tuple[str, int], tuple[int, int]]  # (topic, partition) -> (fetch offset, max bytes)


@dataclass
class FetchSession:
    """One broker's view of this consumer's session: what it holds and the next epoch.

    `closing`: a session dropped by `reset` that the broker may still keep; the next (full)
    fetch names it with epoch 0, which closes it as it opens the new one (KIP-227)."""

    id: int = 0
    epoch: int = _INITIAL_EPOCH
    held: Sent = field(default_factory=dict)
    closing: int = 0

    def reset(self, reason: str, *, close: bool = True) -> None:
        if self.id:
            log.info("fetch_session_reset", session_id=self.id, reason=reason)
        if close and self.id:
            self.closing = self.id
        self.id, self.epoch, self.held = 0, _INITIAL_EPOCH, {}

    def answered(self, request: SessionFetchRequest, response) -> None:
        """Apply a response to the request built from this session (one in flight a node).

        The broker includes a partition in an incremental answer only when something about it
        changed, and drops from its session what the request forgot; an answer naming a
        partition the session does not hold, or another session, is not trusted: its unknown
        entries are dropped (aiokafka could not place them) and the session starts again."""
        if request.sessionless:
            return
        error = getattr(response, "error_code", 0)
        if error:  # e.g. 70 FETCH_SESSION_ID_NOT_FOUND, 71 INVALID_FETCH_SESSION_EPOCH
            self.reset(f"error {error}", close=error != _SESSION_NOT_FOUND)
            return
        session_id = getattr(response, "session_id", 0)
        if request.full:
            self.closing = 0  # closed by this request, if the broker still had it
            self.id = session_id
            self.epoch = 1 if session_id else _INITIAL_EPOCH  # no session given: full again
            self.held = request.wanted if session_id else {}
            return
        if session_id != self.id or not _within(response, request.wanted):
            self.reset("unexpected answer")
            return
        self.epoch = 1 if self.epoch >= _MAX_EPOCH else self.epoch + 1
        self.held = request.wanted


def _within(response, wanted: Sent) -> bool:
    """True when every partition the answer names is one the request's session holds; else
    the unknown entries are removed from the answer."""
    topics = response.topics
    if all((t, entry[0]) in wanted for t, entries in topics for entry in entries):
        return True
    response.topics = [
        (t, [entry for entry in entries if (t, entry[0]) in wanted]) for t, entries in topics
    ]
    return False


class SessionFetchRequest(FetchRequest):
    """aiokafka's fetch request, sent as part of a session.

    `topics` stays the full list (aiokafka matches the response's partitions against it);
    what goes on the wire is the difference from what the broker's session holds. `response`
    is the broker's answer, once there is one."""

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
        self.response = None

    def build(self, request_struct_class):
        if request_struct_class.API_VERSION < _SESSIONS_FROM:
            self.sessionless = True  # an old broker: a full fetch, as aiokafka sends it
            self.session.reset("no sessions before Fetch v7", close=False)
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
        struct.session_id = session.id if session.id else session.closing
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
        except BaseException as exc:  # sent or not, applied or not: start a new session
            request.session.reset(type(exc).__name__)
            if closed_connection(exc):  # aiokafka retries a connection error; this would stop it
                raise KafkaConnectionError(f"the broker closed the connection: {exc}") from exc
            raise
        request.session.answered(request, response)
        request.response = response
        return response


class SessionFetcher(Fetcher):
    """aiokafka's Fetcher, fetching in sessions, one a broker."""

    def __init__(self, client, *args, **kwargs) -> None:
        super().__init__(_SessionClient(client), *args, **kwargs)
        self._sessions: dict[int, FetchSession] = {}
        self._stamped: dict[int, float] = {}
        self._assignment = None

    async def _proc_fetch_request(self, assignment, node_id, request):
        if assignment is not self._assignment:
            # a new assignment's partitions start with no highwater, which the broker sends
            # only for a partition new to its session or whose highwater moved: start afresh
            self._assignment = assignment
            for session in self._sessions.values():
                session.reset("new assignment")
        session = self._sessions.setdefault(node_id, FetchSession())
        request = SessionFetchRequest(request, session)
        result = await super()._proc_fetch_request(assignment, node_id, request)
        if request.response is not None and assignment.active:
            if _dropped(assignment, request):
                # aiokafka set aside an entry (its position moved meanwhile), so it missed
                # the highwater the broker now counts as sent: ask for everything again
                session.reset("entry set aside")
            if not request.full:
                self._stamp(assignment, node_id, request)
        return result

    def _stamp(self, assignment, node_id: int, request: SessionFetchRequest) -> None:
        """Mark the partitions an answer left out as fetched, at most once a second a broker
        (aiokafka stamps only the partitions in an answer; Faust reads the stamp)."""
        now = time.time()
        if now - self._stamped.get(node_id, 0.0) < _STAMP_EVERY_S:
            return
        self._stamped[node_id], now_ms = now, int(1000 * now)
        for topic, partition in request.wanted:
            state = assignment.state_value(TopicPartition(topic, partition))
            if state is not None:
                state.timestamp = now_ms


def _dropped(assignment, request: SessionFetchRequest) -> bool:
    """True when aiokafka discarded an entry of the answer: its partition's position is no
    longer the offset this request fetched from (aiokafka's own test for a stale entry)."""
    for topic, entries in request.response.topics:
        for entry in entries:
            offset = request.wanted[(topic, entry[0])][0]
            state = assignment.state_value(TopicPartition(topic, entry[0]))
            if state is None or not state.has_valid_position or state.position != offset:
                return True
    return False


def install(settings: Settings) -> None:
    """Every aiokafka consumer started from now on in this process fetches in sessions (or, with
    the setting off, as aiokafka does)."""
    aiokafka_consumer.Fetcher = SessionFetcher if settings.kafka_fetch_sessions else Fetcher
