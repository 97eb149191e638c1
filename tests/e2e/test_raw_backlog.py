"""streams.raw_progress on the real broker: the workers' group is seen to have normalised every
raw record stored before a moment once it has, and a group that never read them never is."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from payloads import purchase

from streams.raw_progress import RawProgress


async def test_the_workers_catch_up_and_a_group_that_never_read_does_not(api, tenant, stack):
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], json=purchase("RAWPROGRESS-1", 1000, email="rp@example.com")
    )
    assert status == 202, body
    moment = datetime.now(UTC)
    settings = stack.settings()
    workers = RawProgress(settings.bootstrap_list, settings.worker_id)
    nobody = RawProgress(settings.bootstrap_list, "a-group-that-never-read-webhooks-raw")
    try:
        assert not await nobody.normalised_before(moment)
        deadline = time.monotonic() + 30
        while not await workers.normalised_before(moment):
            assert time.monotonic() < deadline, "the workers never committed past the purchase"
            await asyncio.sleep(0.5)
    finally:
        await workers.close()
        await nobody.close()
