"""The stream worker process: every agent on one Faust app (`kopilka worker`)."""

from __future__ import annotations

from pathlib import Path

import faust

import streams.dead_letters
import streams.expiry
import streams.ledger
import streams.metrics  # Prometheus: the sensor, the sampler, the endpoint
import streams.normalize
import streams.outbound
import streams.read_model  # the read model's agents: the Postgres sinks fed from the stream
import streams.settlement
import streams.watchdog  # noqa: F401 - these imports register the agents and the expiry timer
from kopilka.core.logging import dict_config
from kopilka.core.settings import get_settings
from streams.app import app
from streams.local_tables import LocalTables


def run() -> None:
    settings = get_settings()
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
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code in (0, None):
            tables.stopped_cleanly()
        raise
