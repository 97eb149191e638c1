"""The `normalize` and `normalize_deferred` agents, driven through Faust's `agent.test_context()`
on an app made by `create_app`: what they send for what the normaliser yields (commands, the
audit line, refusals for a waiting request, dead letters, refunds sent round webhooks.deferred),
in order, and that every raw record is acknowledged. The normaliser itself (Postgres behind it)
is scripted here: `streams.normalizer` has its own tests."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from test_rules import CUSTOMER, RULES, TENANT

from schemas.commands import PurchaseCommand, batch_items, command_of, parse_command
from schemas.dead_letters import DeadLetter
from schemas.messages import AuditRecord, Outcome, RawEnvelope, audit_lines
from schemas.routing import by_order
from streams import dead_letters, normalize
from streams.normalizer import Normalized
from streams.request_records import dead_letter, refusal


def envelope(event_id: str, *, wait: bool = False, **fields) -> RawEnvelope:
    return RawEnvelope.wrap(
        b'{"any": "body"}',
        event_id=event_id,
        tenant_id=TENANT,
        received_at=datetime.now(UTC),
        content_type="application/json",
        wait=wait,
        **fields,
    )


def command(event_id: str, item: int) -> PurchaseCommand:
    return PurchaseCommand(
        command_id=f"{event_id}-{item}",
        request_id=event_id,
        tenant_id=TENANT,
        customer=CUSTOMER,
        occurred_at=datetime.now(UTC),
        rules=RULES,
        order_id=f"O-{event_id}-{item}",
        amount=Decimal(100),
    )


class Scripted:
    """A normaliser whose answer for each request is set by the test (by event_id); one named
    `poison` fails any batch it is in, and alone too."""

    def __init__(self, results: dict[str, Normalized], poison: str | None = None) -> None:
        self.results, self.poison, self.batches = results, poison, []

    async def normalize(self, envs: list[RawEnvelope]) -> list[Normalized]:
        self.batches.append([env.event_id for env in envs])
        if any(env.event_id == self.poison for env in envs):
            raise ValueError("a bug in the normaliser")
        return [self.results[env.event_id] for env in envs]


class Backlog:
    """streams.raw_progress: whether every raw record stored before a moment is normalised."""

    def __init__(self, done: bool) -> None:
        self.done = done

    async def normalised_before(self, stored_at: datetime) -> bool:
        return self.done


@pytest.fixture
def wired(stream_app, sent, as_from_the_consumer, monkeypatch):
    dead_letters.register(stream_app)
    normalize.register(stream_app)

    def script(results, *, poison=None, backlog_done=True) -> Scripted:
        scripted = Scripted(results, poison)
        monkeypatch.setattr(normalize, "normalizer", scripted)
        monkeypatch.setattr(normalize, "raw_progress", Backlog(backlog_done))
        return scripted

    return stream_app.app.agents, script


async def put_all(agent, *records: tuple[bytes | None, bytes]) -> list:
    """The records queued together, as one fetch queues them, then taken as they are ready."""
    async with agent.test_context() as ctx:
        events = [await ctx.put(value, key=key, wait=False) for key, value in records]
        for _ in range(300):
            if all(e.message.acked for e in events):
                break
            await asyncio.sleep(0.01)
    return events


def raw(env: RawEnvelope, key: bytes | None = None) -> tuple[bytes, bytes]:
    return (key or f"{TENANT}:{env.event_id}".encode(), env.to_bytes())


def audits(sent, topic: str = "webhooks.audit") -> list[AuditRecord]:
    return [line for _, value in sent.get(topic, []) for line in audit_lines(value)]


async def test_each_request_s_commands_go_out_in_order_then_its_audit_line(wired, sent):
    agents, script = wired
    first, second = envelope("e1"), envelope("e2")
    script(
        {
            "e1": Normalized(commands=[command("e1", 0), command("e1", 1)]),
            "e2": Normalized(commands=[command("e2", 0)]),
        }
    )
    events = await put_all(agents["streams.normalize.normalize"], raw(first), raw(second))
    assert all(e.message.acked for e in events)
    expected = [command("e1", 0), command("e1", 1), command("e2", 0)]
    assert [key for key, _ in sent["loyalty.commands"]] == [c.key for c in expected]
    ids = [PurchaseCommand.from_bytes(v).command_id for _, v in sent["loyalty.commands"]]
    assert ids == ["e1-0", "e1-1", "e2-0"]
    lines = audits(sent)
    assert [(a.event_id, a.status, a.reason) for a in lines] == [
        ("e1", "accepted", "2 command(s), 0 refused"),
        ("e2", "accepted", "1 command(s), 0 refused"),
    ]
    assert {key for key, _ in sent["webhooks.audit"]} == {TENANT.encode()}
    assert "loyalty.outcomes" not in sent and "kopilka.dead-letters" not in sent


async def test_a_batch_s_audit_lines_go_out_a_few_hundred_a_record_per_tenant(
    wired, sent, monkeypatch
):
    monkeypatch.setattr(normalize, "AUDIT_LINES_PER_RECORD", 2)
    lines = {
        "t1": [accepted_line(f"e{i}", "t1") for i in range(5)],
        "t2": [accepted_line("e9", "t2")],
    }
    await normalize._send_audit(lines)
    records = sent["webhooks.audit"]
    assert [key for key, _ in records] == [b"t1", b"t1", b"t1", b"t2"]
    assert [len(audit_lines(value)) for _, value in records] == [2, 2, 1, 1]
    assert [line.event_id for line in audits(sent)] == ["e0", "e1", "e2", "e3", "e4", "e9"]


def accepted_line(event_id: str, tenant_id: str) -> AuditRecord:
    return AuditRecord(
        event_id=event_id,
        tenant_id=tenant_id,
        received_at=datetime.now(UTC),
        status="accepted",
        code="accepted",
        reason="1 command(s), 0 refused",
    )


async def test_refused_items_are_told_to_a_waiting_request_only(wired, sent):
    agents, script = wired
    waits, fire_and_forget = envelope("w", wait=True), envelope("f")
    script(
        {
            "w": Normalized(refused=[refusal(waits, 0, "order_taken", "another customer's")]),
            "f": Normalized(refused=[refusal(fire_and_forget, 0, "order_taken", "taken")]),
        }
    )
    await put_all(agents["streams.normalize.normalize"], raw(waits), raw(fire_and_forget))
    [(key, value)] = sent["loyalty.outcomes"]
    outcome = Outcome.model_validate_json(value)
    assert key == b"w" and outcome.status == "rejected"
    assert outcome.reason == "order_taken: another customer's"
    assert [a.reason for a in audits(sent)] == ["0 command(s), 1 refused"] * 2


async def test_an_unreadable_record_is_dead_and_kept_whole_and_the_batch_goes_on(wired, sent):
    agents, script = wired
    fine = envelope("ok")
    script({"ok": Normalized(commands=[command("ok", 0)])})
    events = await put_all(
        agents["streams.normalize.normalize"], (f"{TENANT}:x".encode(), b"not json"), raw(fine)
    )
    assert all(e.message.acked for e in events)
    [dead] = audits(sent, "webhooks.dead")
    assert (dead.status, dead.code, dead.tenant_id) == ("dead", "unreadable_envelope", TENANT)
    [(_, value)] = sent["kopilka.dead-letters"]
    dl = DeadLetter.from_bytes(value)
    assert (dl.stage, dl.code, dl.tenant_id) == ("normalize", "unreadable_envelope", TENANT)
    assert base64.b64decode(dl.value_b64) == b"not json"
    assert [c for c, _ in sent["loyalty.commands"]] == [command("ok", 0).key]


async def test_a_request_that_yields_nothing_goes_to_webhooks_dead_and_the_dead_letters(
    wired, sent
):
    agents, script = wired
    env = envelope("gone", wait=True)
    script({"gone": Normalized(dead=dead_letter(env, "unknown_tenant", None, "no such tenant"))})
    await put_all(agents["streams.normalize.normalize"], raw(env))
    [dead] = audits(sent, "webhooks.dead")
    assert (dead.event_id, dead.code) == ("gone", "unknown_tenant")
    [(_, value)] = sent["kopilka.dead-letters"]
    dl = DeadLetter.from_bytes(value)
    assert (dl.stage, dl.code, dl.request_id) == ("normalize", "unknown_tenant", "gone")
    assert "webhooks.audit" not in sent and "loyalty.commands" not in sent


async def test_a_batch_the_normaliser_fails_on_is_done_record_by_record(wired, sent):
    agents, script = wired
    a, bad, b = envelope("a"), envelope("bad"), envelope("b")
    scripted = script(
        {"a": Normalized(commands=[command("a", 0)]), "b": Normalized(commands=[command("b", 0)])},
        poison="bad",
    )
    await put_all(agents["streams.normalize.normalize"], raw(a), raw(bad), raw(b))
    assert scripted.batches[-3:] == [["a"], ["bad"], ["b"]]  # after the batch failed
    ids = [PurchaseCommand.from_bytes(v).command_id for _, v in sent["loyalty.commands"]]
    assert ids == ["a-0", "b-0"]
    [dead] = audits(sent, "webhooks.dead")
    assert (dead.event_id, dead.code) == ("bad", "internal_error")
    [(_, value)] = sent["kopilka.dead-letters"]
    assert DeadLetter.from_bytes(value).error.startswith("ValueError")
    assert [line.event_id for line in audits(sent)] == ["a", "b"]


async def test_a_refund_waiting_for_its_order_is_sent_round_webhooks_deferred(
    wired, sent, stream_app
):
    agents, script = wired
    env = envelope("refund")
    script({"refund": Normalized(waiting_for="O-9")})
    key = by_order(TENANT, "O-9")
    before = datetime.now(UTC)
    await put_all(agents["streams.normalize.normalize"], raw(env, key))
    [(sent_key, value)] = sent["webhooks.deferred"]
    again = RawEnvelope.from_bytes(value)
    wait = timedelta(seconds=stream_app.settings.refund_order_wait_s)
    assert sent_key == key and again.event_id == "refund"
    assert before + wait <= again.deferred_until <= datetime.now(UTC) + wait
    assert again.not_before > before and again.stored_at is not None
    assert "loyalty.commands" not in sent and "webhooks.audit" not in sent


@pytest.mark.parametrize(("backlog_done", "round_again"), [(True, False), (False, True)])
async def test_a_deferred_refund_past_its_wait_goes_ahead_only_once_the_backlog_is_done(
    wired, sent, backlog_done, round_again
):
    agents, script = wired
    past = datetime.now(UTC) - timedelta(seconds=1)
    env = envelope("late", deferred_until=past, not_before=past, stored_at=past)
    refused = refusal(env, 0, "unknown_order", "no purchase of this order")
    script({"late": Normalized(refused=[refused], waiting_for="O-9")}, backlog_done=backlog_done)
    [event] = await put_all(
        agents["streams.normalize.normalize_deferred"], raw(env, by_order(TENANT, "O-9"))
    )
    assert event.message.acked
    if round_again:  # its purchase may still be in the raw backlog: once more
        [(_, value)] = sent["webhooks.deferred"]
        assert RawEnvelope.from_bytes(value).deferred_until == past
        assert "webhooks.audit" not in sent
    else:
        assert "webhooks.deferred" not in sent
        assert [a.reason for a in audits(sent)] == ["0 command(s), 1 refused"]


async def test_a_batch_s_commands_go_one_record_per_partition_each_in_its_order(
    wired, stream_app, monkeypatch
):
    """With the producer knowing the topic (here: a fake partitioner by customer), the commands
    of one batch go as one record per partition, a lone one as itself, keyed by the first."""
    agents, script = wired
    other = CUSTOMER.model_copy(update={"id": "33333333-3333-3333-3333-333333333333"})

    def of(event_id: str, item: int, customer=CUSTOMER) -> PurchaseCommand:
        return command(event_id, item).model_copy(update={"customer": customer})

    script(
        {
            "e1": Normalized(commands=[of("e1", 0), of("e1", 1, other)]),
            "e2": Normalized(commands=[of("e2", 0)]),
        }
    )
    partitions = {CUSTOMER.id: 3, other.id: 5}
    monkeypatch.setattr(
        normalize, "partition_of", lambda key: partitions[key.decode().split(":")[1]]
    )
    records: list[tuple[bytes, bytes, int]] = []

    async def send(*, key, value, partition=None):
        records.append((key, value, partition))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    monkeypatch.setattr(stream_app.topics.commands, "send", send)
    events = await put_all(
        agents["streams.normalize.normalize"], raw(envelope("e1")), raw(envelope("e2"))
    )
    assert all(e.message.acked for e in events)
    [(key3, batch, p3), (key5, lone, p5)] = records
    assert (p3, key3, p5, key5) == (3, of("e1", 0).key, 5, of("e1", 1, other).key)
    items = batch_items(batch)
    assert [command_of(fields).command_id for fields in items] == ["e1-0", "e2-0"]
    assert batch_items(lone) is None and parse_command(lone).command_id == "e1-1"


def test_commands_are_cut_into_records_by_count_and_by_size(monkeypatch):
    monkeypatch.setattr(normalize, "COMMANDS_PER_RECORD", 3)
    monkeypatch.setattr(normalize, "COMMAND_RECORD_BYTES", 100)
    small = [(b"k%d" % i, b"x" * 10) for i in range(7)]
    assert [len(c) for c in normalize._chunks(small)] == [3, 3, 1]
    big = (b"big", b"y" * 500)  # larger than a record may be: alone, in its place
    sizes = [len(c) for c in normalize._chunks([small[0], big, *small[1:3]])]
    assert sizes == [1, 1, 2]
    assert [p for c in normalize._chunks(small) for p in c] == small  # order kept
    assert normalize._chunks([]) == []
