"""Per-shop rate limits over real HTTP, shared through the real Redis by two ingress processes."""

from __future__ import annotations

import asyncio
import json

import pytest
from payloads import purchase

from kopilka.devstack import devservices


def batch(prefix: str, n: int) -> list[dict]:
    """A Tilda JSON array: several orders in one request."""
    return [
        {
            "email": f"{prefix.lower()}-{i}@example.com",
            "payment": {"orderid": f"{prefix}-{i}", "amount": "100"},
        }
        for i in range(n)
    ]


async def test_over_the_limit_gets_429_with_retry_after_and_ratelimit_headers(
    api, tenant, set_edge
):
    await set_edge(tenant, rate_limit_per_minute=6, rate_limit_burst=3)
    answers = [
        await api.post_webhook(
            tenant["webhook_secret"], json=purchase(f"RL-{i}", 100, email="rl@example.com")
        )
        for i in range(4)
    ]
    assert [a[0] for a in answers] == [202, 202, 202, 429]
    assert [a[2]["RateLimit"] for a in answers[:3]] == [
        '"tenant";r=2;t=10',
        '"tenant";r=1;t=20',
        '"tenant";r=0;t=30',
    ]
    _, body, headers = answers[3]
    assert body["error"] == "rate_limited" and "6 requests per minute" in body["reason"]
    assert headers["RateLimit-Policy"] == '"tenant";q=3;w=30'
    assert 1 <= int(headers["Retry-After"]) <= 10
    assert headers["RateLimit"].startswith('"tenant";r=0;')


async def test_a_batch_counts_as_one_request(api, tenant, set_edge):
    await set_edge(tenant, rate_limit_per_minute=1, rate_limit_burst=2)
    status, body, headers = await api.post_webhook(tenant["webhook_secret"], json=batch("RLB", 5))
    assert status == 202 and len(body["orders"]) == 5
    assert headers["RateLimit"].startswith('"tenant";r=1;')


async def test_shops_have_their_own_limits(api, make_tenant, set_edge):
    busy, quiet = await make_tenant("Busy"), await make_tenant("Quiet")
    await set_edge(busy, rate_limit_per_minute=1, rate_limit_burst=1)
    assert (await api.post_webhook(busy["webhook_secret"], json=batch("RLQ1", 1)))[0] == 202
    assert (await api.post_webhook(busy["webhook_secret"], json=batch("RLQ2", 1)))[0] == 429
    assert (await api.post_webhook(quiet["webhook_secret"], json=batch("RLQ3", 1)))[0] == 202


@pytest.fixture
def second_ingress(stack):
    """Another ingress process on its own port, sharing the stack's Kafka, Postgres and Redis."""
    port = devservices.free_port()
    proc = stack.start_ingest(
        stack.data_dir / "logs" / "ingest-2.log", env={"KOPILKA_HTTP_PORT": str(port)}
    )
    yield f"http://127.0.0.1:{port}"
    proc.stop()
    stack.processes.remove(proc)


async def test_two_ingress_processes_share_one_limit_through_redis(
    api, tenant, set_edge, second_ingress
):
    await set_edge(tenant, rate_limit_per_minute=1, rate_limit_burst=10)
    urls = [
        f"{api.base}/api/webhook/{tenant['webhook_secret']}",
        f"{second_ingress}/api/webhook/{tenant['webhook_secret']}",
    ]

    async def post(i: int) -> int:
        body = json.dumps(batch(f"RL2-{i}", 1))
        async with api.session.post(
            urls[i % 2], data=body, headers={"Content-Type": "application/json"}
        ) as r:
            return r.status

    statuses = await asyncio.gather(*(post(i) for i in range(16)))
    by_process = [[s for i, s in enumerate(statuses) if i % 2 == p] for p in (0, 1)]
    assert statuses.count(202) == 10, statuses  # not 10 per process: one bucket for both
    assert statuses.count(429) == 6
    assert all(202 in answers for answers in by_process)  # both processes took part


async def test_redis_backend_is_stated_in_the_log(stack):
    log = (stack.data_dir / "logs" / "ingest.log").read_text()
    assert '"backend": "redis"' in log and "edge_state" in log


async def test_without_redis_each_process_limits_alone_and_says_so(api, tenant, set_edge, stack):
    port = devservices.free_port()
    log_path = stack.data_dir / "logs" / "ingest-no-redis.log"
    proc = stack.start_ingest(log_path, env={"KOPILKA_HTTP_PORT": str(port), "REDIS_URL": ""})
    try:
        await set_edge(tenant, rate_limit_per_minute=1, rate_limit_burst=2)
        url = f"http://127.0.0.1:{port}/api/webhook/{tenant['webhook_secret']}"
        statuses = []
        for i in range(3):
            async with api.session.post(url, json=batch(f"RLN-{i}", 1)) as resp:
                statuses.append(resp.status)
        assert statuses == [202, 202, 429]
        # the stack's own ingress (Redis) has a bucket of its own: not shared with this one
        status, _, _ = await api.post_webhook(tenant["webhook_secret"], json=batch("RLN-9", 1))
        assert status == 202
    finally:
        proc.stop()
        stack.processes.remove(proc)
    line = next(x for x in log_path.read_text().splitlines() if '"edge_state"' in x)
    assert '"backend": "in-process"' in line and "REDIS_URL is not set" in line
