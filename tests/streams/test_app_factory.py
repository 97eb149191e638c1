"""The Faust app comes from `streams.app.create_app`: importing any streams module builds no app
and reads no settings, and the worker's app carries the agents, timers and topics it always had."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner as AiokafkaPartitioner

from kopilka.core import topics
from kopilka.core.partitioning import DefaultPartitioner
from kopilka.core.settings import Settings
from streams.app import create_app
from streams.worker import build

ROOT = Path(__file__).resolve().parents[2]

# The names the dashboards, the metrics' `agent` label and the e2e tests know them by.
AGENTS = {
    "streams.dead_letters.dead_letter_store",
    "streams.ledger.ledger",
    "streams.normalize.normalize",
    "streams.normalize.normalize_deferred",
    "streams.outbound.outbound_fanout",
    "streams.read_model.audit_sink",
    "streams.read_model.read_model_sink",
}
TIMERS_AND_TASKS = [
    "_serve_metrics",
    "_sample_metrics",
    "expiry_sweep",
    "settlement_sweep",
    "_log_progress",
    "_load_rules",
    "_watch_commits",
]


def test_importing_the_streams_modules_builds_no_app_and_reads_no_settings():
    probe = textwrap.dedent(
        """
        import importlib, pkgutil
        import faust
        from kopilka.core import settings

        def refused(*args, **kwargs):
            raise AssertionError("built at import")

        settings.Settings.__init__ = refused
        settings.get_settings = refused
        faust.App.__init__ = refused
        import streams
        names = [m.name for m in pkgutil.walk_packages(streams.__path__, "streams.")]
        for name in names:
            importlib.import_module(name)
        print(len(names))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout) > 20  # every module of streams/ was imported


def test_the_app_has_the_topics_and_the_table_its_settings_say(tmp_path):
    settings = Settings(
        _env_file=None,
        worker_id="w-7",
        kafka_bootstrap_servers="k1:9092,k2:9093",
        topic_partitions=6,
        worker_data_dir=tmp_path,
    )
    made = create_app(settings)
    assert made.app.conf.id == "w-7"
    assert [str(url) for url in made.app.conf.broker] == ["kafka://k1:9092", "kafka://k2:9093"]
    assert made.app.conf.datadir == tmp_path
    assert made.topics.commands.get_topic_name() == topics.COMMANDS.name
    assert made.topics.notifications_telegram.get_topic_name() == topics.NOTIFICATIONS_TELEGRAM.name
    assert made.topics.events.partitions == 6
    assert made.state_table.name == topics.LEDGER_TABLE
    assert made.state_table.value_serializer == "kopilka-state"
    assert made.state_table.changelog_topic.get_topic_name() == topics.ledger_changelog("w-7").name
    # records land where Kafka's own partitioner puts them (the cached murmur2 of core)
    assert isinstance(made.app.producer.partitioner, DefaultPartitioner)
    assert made.app.producer.partitioner(b"tenant:customer", list(range(32)), []) == (
        AiokafkaPartitioner()(b"tenant:customer", list(range(32)), [])
    )
    other = create_app(settings.model_copy(update={"worker_id": "w-8"}))
    assert other.app is not made.app and other.state_table is not made.state_table


def test_the_worker_puts_every_agent_timer_and_task_on_its_app(tmp_path):
    made = build(Settings(_env_file=None, worker_data_dir=tmp_path), store="memory://")
    assert set(made.app.agents) == AGENTS
    assert [task.__name__ for task in made.app._app_tasks] == TIMERS_AND_TASKS
    assert len(list(made.app.sensors)) == 1
