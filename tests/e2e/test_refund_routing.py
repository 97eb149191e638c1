"""ingest.order_routes on the real stack: a refund travels with its order's purchase (the same
key on webhooks.raw) because the ingress remembered the purchase's route in Redis before its
202, whether or not a worker has claimed the order yet."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer
from payloads import action, purchase
from redis.asyncio import Redis

from ingest.order_routes import RedisOrderRoutes
from kopilka.kafka import assign_whole_topic
from schemas.inbound import parse_webhook
from schemas.messages import RawEnvelope


async def _raw_keys(bootstrap: list[str], event_ids: set[str]) -> dict[str, bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await assign_whole_topic(consumer, "webhooks.raw")
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        found: dict[str, bytes] = {}
        left = {tp for tp in tps if end[tp]}
        while left:
            for tp, records in (await consumer.getmany(*left, timeout_ms=500)).items():
                for r in records:
                    env = RawEnvelope.from_bytes(r.value)
                    if env.event_id in event_ids:
                        found[env.event_id] = r.key
                    if r.offset + 1 >= end[tp]:
                        left.discard(tp)
        return found
    finally:
        await consumer.stop()


async def test_a_refund_goes_with_its_purchase(api, tenant, stack):
    order = f"ROUTE-{uuid.uuid4().hex[:8]}"
    secret = tenant["webhook_secret"]
    status, bought, _ = await api.post_webhook(
        secret, json=purchase(order, 1000, email=f"{order.lower()}@example.com")
    )
    assert status == 202, bought
    status, refunded, _ = await api.post_webhook(secret, json=action("refund", orderId=order))
    assert status == 202, refunded
    keys = await _raw_keys(
        stack.settings().bootstrap_list, {bought["event_id"], refunded["event_id"]}
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
