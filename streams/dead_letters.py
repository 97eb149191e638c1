"""Dead letters out of the stream: what a stage gives up on goes to `kopilka.dead-letters`.

`send` is what every agent calls instead of dropping a record; it returns once the broker has
the dead letter, so the agent may acknowledge the original afterwards.
"""

from __future__ import annotations

from kopilka.logging import get_logger
from schemas.dead_letters import DeadLetter
from streams.app import dead_letters

log = get_logger(__name__)


async def send(dl: DeadLetter) -> None:
    log.warning(
        "dead_letter",
        stage=dl.stage,
        code=dl.code,
        tenant_id=dl.tenant_id,
        request_id=dl.request_id,
        source_topic=dl.source_topic,
        partition=dl.partition,
        offset=dl.offset,
        attempts=dl.attempts,
    )
    fut = await dead_letters.send(key=(dl.tenant_id or "").encode(), value=dl.to_bytes())
    await fut
