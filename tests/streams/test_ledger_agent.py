"""The `ledger` agent, driven through Faust's `agent.test_context()` on an app made by
`create_app` with an in-memory table: what each command writes to the table's changelog and
sends to loyalty.events, loyalty.outcomes and kopilka.dead-letters; and that every record is
acknowledged once applied or dead-lettered."""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal

import orjson
import pytest
from test_rules import CUSTOMER, RULES, T0, TENANT

from schemas.commands import PurchaseCommand, RefundCommand, command_batch, parse_command
from schemas.dead_letters import DeadLetter
from schemas.messages import Outcome, SettleCommand
from schemas.rules.state import OrderState
from streams import dead_letters, ledger

KEY = f"{TENANT}:{CUSTOMER.id}"
CHANGELOG = "unit-ledger-state-changelog"


def purchase(order_id: str = "O-1", amount: int = 1000, **fields) -> PurchaseCommand:
    return PurchaseCommand(
        command_id=f"buy-{order_id}",
        request_id=f"req-{order_id}",
        tenant_id=TENANT,
        customer=CUSTOMER,
        occurred_at=T0,
        rules=RULES,
        order_id=order_id,
        amount=Decimal(amount),
        **fields,
    )


def refund(order_id: str = "O-1", **fields) -> RefundCommand:
    return RefundCommand(
        command_id=f"refund-{order_id}",
        request_id=f"req-refund-{order_id}",
        tenant_id=TENANT,
        customer=CUSTOMER,
        occurred_at=T0,
        rules=RULES,
        order_id=order_id,
        refund_id="R-1",
        **fields,
    )


@pytest.fixture
def agent(stream_app, sent, monkeypatch, as_from_the_consumer):
    dead_letters.register(stream_app)
    ledger.register(stream_app)
    return stream_app.app.agents["streams.ledger.ledger"]


async def put_all(agent, *records: tuple[bytes, bytes]) -> list:
    """Put each (key, value) on the agent's channel; the events, once the agent is done."""
    async with agent.test_context() as ctx:
        events = [await ctx.put(value, key=key) for key, value in records]
        for _ in range(100):
            if all(e.message.acked for e in events):
                break
            await asyncio.sleep(0.01)
    return events


def event_types(sent) -> list[str]:
    return [orjson.loads(value)["type"] for _, value in sent.get("loyalty.events", [])]


async def test_a_purchase_writes_the_customer_entry_first_and_sends_its_event_and_outcome(
    agent, sent, stream_app
):
    cmd = purchase(wait=True)
    [event] = await put_all(agent, (cmd.key, cmd.to_bytes()))
    assert event.message.acked
    # the customer entry before the order entry: a replay repairs a lost order write
    assert [key for key, _ in sent[CHANGELOG]] == [f"c|{KEY}", f"o|{KEY}|O-1"]
    [(key, value)] = sent["loyalty.events"]
    awarded = orjson.loads(value)
    assert key == cmd.key
    assert (awarded["type"], awarded["points"], awarded["order_id"]) == ("bonus_awarded", 50, "O-1")
    [(key, value)] = sent["loyalty.outcomes"]
    outcome = Outcome.model_validate_json(value)
    assert key == b"req-O-1"
    assert (outcome.command_id, outcome.status, outcome.events) == ("buy-O-1", "applied", [awarded])
    assert OrderState.from_bytes(stream_app.state_table[f"o|{KEY}|O-1"]).awarded == 50
    assert "kopilka.dead-letters" not in sent


async def test_no_outcome_is_sent_when_nobody_waits(agent, sent):
    cmd = purchase()
    await put_all(agent, (cmd.key, cmd.to_bytes()))
    assert event_types(sent) == ["bonus_awarded"]
    assert "loyalty.outcomes" not in sent


async def test_a_command_delivered_again_sends_the_same_events_and_rewrites_its_entries(
    agent, sent
):
    cmd = purchase()
    await put_all(agent, (cmd.key, cmd.to_bytes()), (cmd.key, cmd.to_bytes()))
    first, again = sent["loyalty.events"]
    assert first == again  # the same event id: the read model and the webhooks absorb it
    writes = sent[CHANGELOG]
    assert len(writes) == 4 and writes[:2] == writes[2:]  # the replay puts them in the changelog


async def test_a_refund_ahead_of_its_purchase_is_parked_then_applied_after_it(agent, sent):
    back, buy = refund(wait=True), purchase(wait=True)
    await put_all(agent, (back.key, back.to_bytes()))
    assert "loyalty.events" not in sent and "loyalty.outcomes" not in sent  # it waits
    assert [key for key, _ in sent[CHANGELOG]] == [f"p|{KEY}|O-1"]
    await put_all(agent, (buy.key, buy.to_bytes()))
    assert event_types(sent) == ["bonus_awarded", "bonus_reversed"]
    parked_gone = sent[CHANGELOG][-1]
    assert parked_gone == (f"p|{KEY}|O-1", None)  # the parked refund is deleted once applied
    [(_, value)] = sent["loyalty.outcomes"]
    assert Outcome.model_validate_json(value).command_id == "buy-O-1"


async def test_settling_shrinks_the_order_entry(agent, sent, stream_app):
    buy = purchase()
    settle = SettleCommand(
        command_id="settle-1",
        request_id="sweep-1",
        tenant_id=TENANT,
        customer=CUSTOMER,
        occurred_at=T0,
        order_ids=["O-1", "O-unknown"],
    )
    await put_all(agent, (buy.key, buy.to_bytes()), (settle.key, settle.to_bytes()))
    order = OrderState.from_bytes(stream_app.state_table[f"o|{KEY}|O-1"])
    assert order.settled and order.purchase_command == "buy-O-1" and order.emitted == ()
    assert event_types(sent) == ["bonus_awarded"]  # settling sends nothing


async def test_an_unreadable_command_goes_whole_to_the_dead_letters(agent, sent):
    [event] = await put_all(agent, (b"t:c", b'{"type": "purchase", "v": 1}'))
    assert event.message.acked
    [(_, value)] = sent["kopilka.dead-letters"]
    dl = DeadLetter.from_bytes(value)
    assert (dl.stage, dl.code) == ("ledger", "unreadable_command")
    assert base64.b64decode(dl.value_b64) == b'{"type": "purchase", "v": 1}'
    assert "loyalty.events" not in sent and CHANGELOG not in sent


async def test_a_command_that_fails_is_dead_lettered_and_its_waiter_told(agent, sent, monkeypatch):
    def broken(customer_key, cmd):
        raise RuntimeError("a bug")

    monkeypatch.setattr(ledger, "step", broken)
    cmd = purchase(wait=True)
    [event] = await put_all(agent, (cmd.key, cmd.to_bytes()))
    assert event.message.acked
    [(_, value)] = sent["kopilka.dead-letters"]
    dl = DeadLetter.from_bytes(value)
    assert (dl.stage, dl.code, dl.request_id) == ("ledger", "internal_error", "req-O-1")
    [(_, value)] = sent["loyalty.outcomes"]
    outcome = Outcome.model_validate_json(value)
    assert (outcome.status, outcome.reason) == ("rejected", "internal_error: RuntimeError")
    assert "loyalty.events" not in sent


OTHER = CUSTOMER.model_copy(update={"id": "33333333-3333-3333-3333-333333333333"})


async def test_a_batch_record_applies_each_command_in_order_as_its_own_customer_s(
    agent, sent, stream_app
):
    first, back = purchase("O-1"), refund("O-1")
    theirs = purchase("O-2").model_copy(update={"customer": OTHER})
    record = command_batch([first.to_bytes(), theirs.to_bytes(), back.to_bytes()])
    [event] = await put_all(agent, (first.key, record))
    assert event.message.acked
    assert [(key, orjson.loads(value)["type"]) for key, value in sent["loyalty.events"]] == [
        (first.key, "bonus_awarded"),
        (theirs.key, "bonus_awarded"),
        (first.key, "bonus_reversed"),
    ]
    assert f"c|{TENANT}:{OTHER.id}" in stream_app.state_table
    assert OrderState.from_bytes(stream_app.state_table[f"o|{KEY}|O-1"]).awarded == 50
    assert "kopilka.dead-letters" not in sent


async def test_a_batch_command_that_cannot_be_read_or_applied_is_dead_lettered_alone(
    agent, sent, monkeypatch
):
    real_step = ledger.step

    def step(customer_key, cmd):
        if cmd.order_id == "O-3":
            raise RuntimeError("a bug")
        return real_step(customer_key, cmd)

    monkeypatch.setattr(ledger, "step", step)
    unreadable = b'{"type":"purchase","v":1}'
    good, failing = purchase("O-2"), purchase("O-3", wait=True)
    record = command_batch([unreadable, good.to_bytes(), failing.to_bytes()])
    [event] = await put_all(agent, (good.key, record))
    assert event.message.acked
    assert event_types(sent) == ["bonus_awarded"]  # O-2's, the only one that could go
    letters = [DeadLetter.from_bytes(value) for _, value in sent["kopilka.dead-letters"]]
    assert [dl.code for dl in letters] == ["unreadable_command", "internal_error"]
    # each carries its command alone, and its own key: a redrive sends it as a record of its own
    assert orjson.loads(base64.b64decode(letters[0].value_b64)) == orjson.loads(unreadable)
    # a batch mixes tenants: not the record's key (its first command's), but none at all
    assert letters[0].key_b64 is None and letters[0].tenant_id is None
    redriven = base64.b64decode(letters[1].value_b64)
    assert parse_command(redriven) == failing
    assert base64.b64decode(letters[1].key_b64) == failing.key
    assert letters[0].dead_letter_id != letters[1].dead_letter_id
    [(_, value)] = sent["loyalty.outcomes"]
    assert Outcome.model_validate_json(value).status == "rejected"


async def test_a_record_newer_than_this_worker_stops_it_without_acknowledging(agent, monkeypatch):
    stopped: list[int] = []

    async def wait_for_upgrade(version: int) -> None:
        stopped.append(version)
        await asyncio.Event().wait()  # os._exit(75) in the worker: nothing after it runs

    monkeypatch.setattr(ledger, "_wait_for_upgrade", wait_for_upgrade)
    newer = b'{"v":3,"type":"batch","commands":[]}'
    [event] = await put_all(agent, (b"t:c", newer))
    assert stopped == [3] and not event.message.acked


def test_an_unreadable_batch_command_keeps_its_own_key_when_its_fields_still_say():
    fields = {"type": "purchase", "tenant_id": "t1", "customer": {"id": "c1"}, "amount": "x"}
    assert ledger._key_of(fields) == b"t1:c1"
    assert ledger._key_of({"tenant_id": "t1"}) is None and ledger._key_of(5) is None
