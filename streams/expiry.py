"""The periodic expiry sweep: on the leader worker, every `expiry_sweep_interval_s` seconds.
`register(stream_app)` puts it on an app (streams.app)."""

from __future__ import annotations

from datetime import UTC, datetime

from kopilka.core.logging import get_logger
from kopilka.core.retry import until_done
from kopilka.directory.expiry import due_commands
from streams.app import StreamApp

log = get_logger(__name__)


_sa: StreamApp  # bound by `register`


def register(stream_app: StreamApp) -> None:
    global _sa
    _sa = stream_app
    stream_app.app.timer(interval=stream_app.settings.expiry_sweep_interval_s, on_leader=True)(
        expiry_sweep
    )


async def expiry_sweep() -> None:
    commands = _sa.topics.commands
    pool = await until_done(_sa.resources.pool, "connect")
    due = await until_done(lambda: due_commands(pool, datetime.now(UTC)), "expiry sweep")
    for cmd in due:
        await commands.send(key=cmd.key, value=cmd.to_bytes())
    if due:
        log.info("expiry_sweep", customers=len(due))
