"""The outbound fan-out under errors: what is retried, what is dead-lettered, nothing dropped."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError

from kopilka.directory.subscriptions import TenantSubscriptions
from streams import outbound
from streams.outbound import Fanout, Source, classify

E = asyncpg.exceptions


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (E.ConnectionDoesNotExistError("gone"), "transient"),  # 08003
        (E.SerializationError("x"), "transient"),  # 40001
        (E.DeadlockDetectedError("x"), "transient"),  # 40P01
        (E.TooManyConnectionsError("x"), "transient"),  # 53300
        (E.AdminShutdownError("x"), "transient"),  # 57P01
        (E.CannotConnectNowError("x"), "transient"),  # 57P03
        (E.QueryCanceledError("statement timeout"), "transient"),  # 57014
        (E.LockNotAvailableError("x"), "transient"),  # 55P03
        (E.ReadOnlySQLTransactionError("x"), "transient"),  # 25006
        (ConnectionRefusedError(), "transient"),
        (TimeoutError(), "transient"),
        (asyncpg.InterfaceError("connection is closed"), "transient"),
        (KafkaConnectionError(), "transient"),
        (KafkaTimeoutError(), "transient"),
        (E.CharacterNotInRepertoireError("NUL"), "data"),  # 22021
        (E.UniqueViolationError("x"), "data"),  # 23505
        (MessageSizeTooLargeError(), "data"),
        (ValueError("bad"), "data"),
        (E.UndefinedTableError("no table"), "unknown"),  # 42P01: a deployment problem
        (RuntimeError("bug"), "unknown"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v,
)
def test_classify(exc, kind):
    assert classify(exc) == kind


TENANT = str(uuid.uuid4())
ENDPOINT = uuid.uuid4()


def event(n: int, tenant: str = TENANT) -> bytes:
    return orjson.dumps(
        {"event_id": str(uuid.UUID(int=n)), "tenant_id": tenant, "type": "bonus_awarded", "n": n}
    )


def source(offset: int, value: bytes) -> Source:
    return Source("loyalty.events", 3, offset, b"k", value)


class Directory:
    async def of(self, tenant_id: str) -> TenantSubscriptions:
        return TenantSubscriptions(((ENDPOINT, ()),), ((42, ("bonus_awarded",)),))


class Scripted(Fanout):
    """The fan-out with its database and broker replaced by scripts of failures."""

    def __init__(self, insert_failures=(), send_failures=(), poison: bytes | None = None):
        self.inserted: list[list] = []
        self.sent: list[bytes] = []
        self.dead: list = []
        self.insert_failures = list(insert_failures)
        self.send_failures = list(send_failures)
        self.poison = poison

        async def send(key, value):
            if self.send_failures:
                raise self.send_failures.pop(0)
            self.sent.append(value)

        async def dead(dl):
            self.dead.append(dl)

        super().__init__(self._no_pool, send, dead)
        self._subs = Directory()

    @staticmethod
    async def _no_pool():
        raise AssertionError("not used")

    async def insert(self, deliveries):
        if self.insert_failures:
            raise self.insert_failures.pop(0)
        if self.poison and any(row[5].encode() == self.poison for row in deliveries):
            raise E.CharacterNotInRepertoireError("invalid byte sequence")
        self.inserted.append(deliveries)


@pytest.fixture
def no_sleep(monkeypatch):
    """Backoff without the waiting (asyncio.sleep, for this test only)."""
    slept = []

    async def sleep(s):
        slept.append(s)

    monkeypatch.setattr(outbound.asyncio, "sleep", sleep)
    return slept


async def test_transient_errors_are_retried_with_capped_backoff_until_written(no_sleep):
    f = Scripted(insert_failures=[E.TooManyConnectionsError("x")] * 8 + [E.AdminShutdownError("y")])
    await f.handle([source(0, event(1)), source(1, event(2))])
    assert len(f.inserted) == 1 and len(f.inserted[0]) == 2
    assert f.dead == []
    assert no_sleep[:3] == [0.1, 0.2, 0.4] and max(no_sleep) == outbound.MAX_BACKOFF_S


async def test_a_rebalance_abandons_the_retrying_batch_instead_of_waiting(no_sleep):
    f = Scripted(insert_failures=[E.TooManyConnectionsError("x")] * 1000)
    rebalancing = iter([False, False, True])
    f.abandon = lambda: next(rebalancing)
    with pytest.raises(outbound.Abandoned):
        await f.handle([source(0, event(1))])
    assert f.inserted == [] and f.dead == []  # nothing written, nothing dead-lettered
    assert len(no_sleep) == 3


async def test_an_unknown_error_is_retried_too_never_dropped(no_sleep):
    f = Scripted(insert_failures=[E.UndefinedTableError("migrating")])
    await f.handle([source(0, event(1))])
    assert len(f.inserted) == 1 and f.dead == []


async def test_an_unreadable_event_is_dead_lettered_whole_and_the_batch_goes_on():
    bad = b'{"type": "bonus_awarded"'
    f = Scripted()
    await f.handle([source(7, bad), source(8, event(1))])
    [dl] = f.dead
    assert (dl.stage, dl.code, dl.source_topic, dl.partition, dl.offset) == (
        "outbound",
        "unreadable_event",
        "loyalty.events",
        3,
        7,
    )
    assert dl.value == bad and dl.key == b"k"
    assert len(f.inserted) == 1 and len(f.sent) == 1


async def test_an_event_postgres_refuses_is_dead_lettered_and_the_others_are_written():
    poison = event(2)
    f = Scripted(poison=poison)
    await f.handle([source(0, event(1)), source(1, poison), source(2, event(3))])
    [dl] = f.dead
    assert (dl.code, dl.offset, dl.tenant_id) == ("rejected_by_database", 1, TENANT)
    assert "CharacterNotInRepertoireError" in dl.error
    written = [row[3].int for batch in f.inserted for row in batch]
    assert sorted(written) == [1, 3]
    # its Telegram record is not sent either: the event is in the dead letters, whole
    assert sorted(orjson.loads(v)["event"]["n"] for v in f.sent) == [1, 3]


async def test_kafka_unavailable_is_retried_and_a_too_large_record_is_dead_lettered(no_sleep):
    f = Scripted(send_failures=[KafkaConnectionError(), KafkaTimeoutError()])
    await f.handle([source(0, event(1))])
    assert len(f.sent) == 1 and f.dead == []
    f = Scripted(send_failures=[MessageSizeTooLargeError()])
    await f.handle([source(5, event(1))])
    assert [d.code for d in f.dead] == ["unsendable_notification"]


# ------------------------------------------------------------ the agent and Faust's acks
class _Stuck:
    """A fan-out whose database never comes back: handle() retries forever."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    async def handle(self, batch) -> None:
        await asyncio.Event().wait()


class _Done(_Stuck):
    async def handle(self, batch) -> None:
        assert [s.value for s in batch] == [b'{"n": 1}']


@pytest.mark.parametrize(("fanout", "acked"), [(_Done, True), (_Stuck, False)])
async def test_a_batch_is_acknowledged_only_once_it_was_handled(
    monkeypatch, stream_app, as_from_the_consumer, fanout, acked
):
    monkeypatch.setattr(outbound, "Fanout", fanout)
    outbound.register(stream_app)
    async with stream_app.app.agents["streams.outbound.outbound_fanout"].test_context() as agent:
        event = await agent.put(b'{"n": 1}', key=b"k")
        await asyncio.sleep(0.3)
    # the agent stopped (a shutdown, a rebalance) with the batch unwritten: no ack for it
    assert event.message.acked is acked
