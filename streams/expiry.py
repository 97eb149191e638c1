"""The periodic expiry sweep: on the leader worker, every `expiry_sweep_interval_s` seconds."""

from __future__ import annotations

from datetime import UTC, datetime

from kopilka.core.logging import get_logger
from kopilka.core.retry import until_done
from kopilka.directory.expiry import due_commands
from streams.app import app, commands, resources, settings

log = get_logger(__name__)


@app.timer(interval=settings.expiry_sweep_interval_s, on_leader=True)
async def expiry_sweep() -> None:
    pool = await until_done(resources.pool, "connect")
    due = await until_done(lambda: due_commands(pool, datetime.now(UTC)), "expiry sweep")
    for cmd in due:
        await commands.send(key=cmd.key, value=cmd.to_bytes())
    if due:
        log.info("expiry_sweep", customers=len(due))
