"""streams.metrics: the Faust sensor's hooks move the per-agent figures, lag is highwater minus
the next offset to process, and the ledger's applied counter is exposed at scrape time."""

from __future__ import annotations

import time
from collections import Counter
from types import SimpleNamespace

from faust.types import TP
from prometheus_client import REGISTRY

from streams import metrics


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_agent_name_is_the_function_of_the_agent():
    assert metrics.agent_name(SimpleNamespace(prefix="streams.ledger.ledger")) == "ledger"
    assert metrics.agent_name(SimpleNamespace(prefix="")) == "unknown"


def test_stream_hooks_count_in_out_time_and_age():
    sensor = metrics.WorkerSensor()  # a real mode.Service: hook names must not shadow its own
    stream = SimpleNamespace(prefix="tests.agent.unit_agent")
    tp = TP("unit.topic", 3)
    event = SimpleNamespace(message=SimpleNamespace(timestamp=time.time() - 2.0))
    before_in = value("kopilka_agent_records_in_total", agent="unit_agent")
    before_out = value("kopilka_agent_records_out_total", agent="unit_agent")
    before_age = value("kopilka_agent_record_age_seconds_sum", agent="unit_agent")

    state = sensor.on_stream_event_in(tp, 41, stream, event)
    sensor.on_stream_event_out(tp, 41, stream, event, state)

    assert value("kopilka_agent_records_in_total", agent="unit_agent") == before_in + 1
    assert value("kopilka_agent_records_out_total", agent="unit_agent") == before_out + 1
    assert value("kopilka_agent_processing_seconds_count", agent="unit_agent") >= 1
    assert value("kopilka_agent_record_age_seconds_sum", agent="unit_agent") - before_age >= 2.0
    assert sensor.next_offset[tp] == 42


def test_send_and_table_hooks():
    sensor = metrics.WorkerSensor()
    sent = value("kopilka_worker_records_sent_total", topic="unit.out")
    failed = value("kopilka_worker_send_errors_total", topic="unit.out")
    state = sensor.on_send_initiated(None, "unit.out", None, 1, 1)
    sensor.on_send_completed(None, state, SimpleNamespace(topic="unit.out"))
    sensor.on_send_error(None, RuntimeError(), state)
    assert value("kopilka_worker_records_sent_total", topic="unit.out") == sent + 1
    assert value("kopilka_worker_send_errors_total", topic="unit.out") == failed + 1
    table = SimpleNamespace(name="unit-table")
    sensor.on_table_set(table, "k", b"v")
    sensor.on_table_get(table, "k")
    assert value("kopilka_table_operations_total", table="unit-table", op="set") >= 1
    assert value("kopilka_table_operations_total", table="unit-table", op="get") >= 1


async def test_lag_is_highwater_minus_the_next_offset_to_process(monkeypatch):
    done, committed_only = TP("unit.lag", 0), TP("unit.lag", 1)
    consumer = SimpleNamespace(
        assignment=lambda: {done, committed_only},
        highwater=lambda tp: 100,
        _committed_offset={committed_only: 60},
    )
    app = SimpleNamespace(consumer=consumer, tables={})
    monkeypatch.setattr(metrics.SENSOR, "next_offset", {done: 90})
    await metrics.sample(app)
    assert value("kopilka_consumer_lag", topic="unit.lag", partition="0") == 10
    assert value("kopilka_consumer_lag", topic="unit.lag", partition="1") == 40
    monkeypatch.setattr(consumer, "assignment", lambda: {done})  # partition 1 moved away
    await metrics.sample(app)
    assert value("kopilka_consumer_lag", topic="unit.lag", partition="0") == 10
    assert (
        REGISTRY.get_sample_value("kopilka_consumer_lag", {"topic": "unit.lag", "partition": "1"})
        is None
    )


def test_ledger_applied_is_read_at_scrape_time(monkeypatch):
    import streams.ledger

    monkeypatch.setattr(streams.ledger, "applied", Counter({"purchase": 7, "spend": 2}))
    assert value("kopilka_ledger_commands_applied_total", type="purchase") == 7
    assert value("kopilka_ledger_commands_applied_total", type="spend") == 2
