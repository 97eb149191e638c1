"""The stream worker process: every agent on one Faust app (`kopilka worker`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust

from kopilka.core.event_loop import use_event_loop
from kopilka.core.heap import freeze_started
from kopilka.core.logging import dict_config, get_logger
from kopilka.core.settings import Settings, get_settings
from streams import (
    dead_letters,
    expiry,
    ledger,
    metrics,
    normalize,
    outbound,
    read_model,
    settlement,
    watchdog,
)
from streams.app import StreamApp, create_app
from streams.local_tables import LocalTables

log = get_logger(__name__)

# In the order the agents, timers and tasks were put on the app when importing did it.
AGENT_MODULES = (
    metrics,
    dead_letters,
    expiry,
    settlement,
    ledger,
    normalize,
    outbound,
    read_model,
    watchdog,
)


def build(settings: Settings, **overrides) -> StreamApp:
    """The worker's app with every agent, timer, task and the metrics sensor on it."""
    stream_app = create_app(settings, **overrides)
    for module in AGENT_MODULES:
        module.register(stream_app)
    return stream_app


def run() -> None:
    settings = get_settings()
    loop = use_event_loop(settings.event_loop)  # before anything makes a loop
    app = build(settings).app

    async def _announce_loop() -> None:  # the loop that runs, not only the one asked for
        running = type(asyncio.get_running_loop())
        log.info("worker_event_loop", loop=loop, running=f"{running.__module__}.{running.__name__}")

    app.task(_announce_loop)
    Path(app.conf.datadir).mkdir(parents=True, exist_ok=True)
    tables = LocalTables(Path(app.conf.tabledir))
    tables.open()  # dropped unless the last run stopped cleanly (streams.local_tables)
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        # Faust's and aiokafka's lines as JSON, like ours (kopilka.core.logging)
        logging_config=dict_config(settings.log_level, settings.log_format),
    )
    # Before Faust starts: everything imported and built so far stays, and nothing it opens
    # (RocksDB databases a revoke must be able to close) is kept out of the collector.
    log.info("heap_frozen", objects=freeze_started())  # kopilka.core.heap
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code in (0, None):
            tables.stopped_cleanly()
        raise
