"""A real redis-server for the ingress's Redis-backed parts, started once per module."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from kopilka.core.settings import PROJECT_ROOT
from kopilka.devstack import devservices


@pytest.fixture(scope="module")
def redis_url(request):
    name = request.module.__name__.rsplit(".", 1)[-1]
    data = PROJECT_ROOT / ".data" / f"redis-{name}"
    proc = devservices.start_redis(data, devservices.free_port())
    yield proc.extra["url"]
    proc.stop()


@pytest.fixture
async def redis(redis_url):
    client = Redis.from_url(redis_url)
    await client.flushdb()
    await client.config_resetstat()
    yield client
    await client.aclose()
