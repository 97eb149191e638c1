"""ingest.order_routes on the real stack: a refund travels with its order's purchase (the same
key on webhooks.raw) because the ingress remembered the purchase's route in Redis before its
202, whether or not a worker has claimed the order yet."""

from __future__ import annotations

import time
import uuid

from aiokafka import AIOKafkaConsumer
from payloads import action, purchase
from redis.asyncio import Redis

from ingest.order_routes import RedisOrderRoutes
from kopilka.core.kafka import assign_whole_topic
from schemas.inbound import parse_webhook
from schemas.messages import RawEnvelope


async def _raw_keys(
    bootstrap: list[str], event_ids: set[str], since_ms: int, timeout_s: float = 60.0
) -> dict[str, bytes]:
    """The webhooks.raw key of each of `event_ids`, reading only what was stored since
    `since_ms`: after a long suite the topic holds tens of thousands of records. A partition
    is done when the consumer's position reaches its end offset (a transaction marker can be
    the last offset, so no record carries it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await assign_whole_topic(consumer, "webhooks.raw")
        end = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        for tp in tps:
            consumer.seek(tp, starts[tp].offset if starts[tp] is not None else end[tp])
        found: dict[str, bytes] = {}
        deadline = time.monotonic() + timeout_s
        left = set(tps)
        while left and time.monotonic() < deadline:
            left = {tp for tp in left if await consumer.position(tp) < end[tp]}
            if not left:
                break
            for records in (await consumer.getmany(*left, timeout_ms=500)).values():
                for r in records:
                    env = RawEnvelope.from_bytes(r.value)
                    if env.event_id in event_ids:
                        found[env.event_id] = r.key
        return found
    finally:
        await consumer.stop()


async def test_a_refund_goes_with_its_purchase(api, tenant, stack):
    order = f"ROUTE-{uuid.uuid4().hex[:8]}"
    since_ms = int(time.time() * 1000) - 5_000
    secret = tenant["webhook_secret"]
    status, bought, _ = await api.post_webhook(
        secret, json=purchase(order, 1000, email=f"{order.lower()}@example.com")
    )
    assert status == 202, bought
    status, refunded, _ = await api.post_webhook(secret, json=action("refund", orderId=order))
    assert status == 202, refunded
    keys = await _raw_keys(
        stack.settings().bootstrap_list, {bought["event_id"], refunded["event_id"]}, since_ms
    )
    assert keys[refunded["event_id"]] == keys[bought["event_id"]]
    redis = Redis.from_url(stack.env["REDIS_URL"])
    try:
        stored = await redis.get(f"kopilka:route:{tenant['tenant_id']}:{order}")
        assert stored == keys[bought["event_id"]]
        assert 0 < await redis.ttl(f"kopilka:route:{tenant['tenant_id']}:{order}")
    finally:
        await redis.aclose()


async def test_routes_on_redis_keep_the_first_claim(stack):
    redis = Redis.from_url(stack.env["REDIS_URL"])
    try:
        routes = RedisOrderRoutes(redis, keep_s=60, prefix=f"test:{uuid.uuid4().hex}:")
        batch = parse_webhook(
            b'{"action":"batch_purchase","payload":{"purchases":['
            b'{"email":"a@example.com","orderId":"B-1","amount":"5"},'
            b'{"email":"b@example.com","orderId":"B-2","amount":"6"}]}}',
            "application/json",
        )
        await routes.remember("t", batch, b"t:batch")
        await routes.remember("t", batch, b"t:later")
        assert await routes.route("t", "B-1") == await routes.route("t", "B-2") == b"t:batch"
        assert await routes.route("t", "B-3") is None
    finally:
        await redis.aclose()
