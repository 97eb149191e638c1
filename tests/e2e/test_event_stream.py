"""The live event stream (`GET /api/v1/events/stream`) on the real stack: Kafka, worker, ingress."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from payloads import WAIT, action, purchase
from sse import open_stream

from ingest import stream_token
from kopilka.core import topics
from kopilka.core.kafka import assign_whole_topic
from kopilka.devstack import devservices

HEARTBEAT_S = 0.5  # the second ingress's; the session's keeps the default 15 s


async def post_purchases(api, tenant, n: int, tag: str | None = None) -> list[str]:
    """n purchases of n customers (spread over partitions); their order ids, in sending order."""
    tag = tag or uuid.uuid4().hex[:8]
    orders = [f"SSE-{tag}-{i}" for i in range(n)]
    for i, order in enumerate(orders):
        status, body, _ = await api.post_webhook(
            tenant["webhook_secret"], json=purchase(order, 1000, email=f"{tag}-{i}@example.com")
        )
        assert status == 202, body
    return orders


def orders_of(messages) -> list[str]:
    return [orjson.loads(m.data)["order_id"] for m in messages]


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_events_appear_as_purchases_are_posted_byte_for_byte(api, tenant, session, stack):
    async with open_stream(session, api.base, tenant["api_key"]) as stream:
        orders = await post_purchases(api, tenant, 3)
        got = await stream.events(3)
    assert sorted(orders_of(got)) == sorted(orders)
    assert {m.event for m in got} == {"bonus_awarded"}
    assert len({m.id for m in got}) == 3
    # data is the Kafka record's value, unchanged
    values = await topic_values(stack, tenant["tenant_id"])
    for m in got:
        event = orjson.loads(m.data)
        assert event["type"] == m.event and event["tenant_id"] == tenant["tenant_id"]
        assert values[event["event_id"]] == m.data


async def topic_values(stack, tenant_id: str) -> dict[str, bytes]:
    """Every loyalty.events value of this tenant, by event_id, read with a plain consumer."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.settings().bootstrap_list, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await assign_whole_topic(consumer, topics.EVENTS.name)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        values = {}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.key.startswith(tenant_id.encode() + b":"):
                        values[orjson.loads(r.value)["event_id"]] = r.value
        return values
    finally:
        await consumer.stop()


async def test_types_filter_sends_only_those_types(api, tenant, session):
    secret = tenant["webhook_secret"]
    query = {"types": "bonus_spent,spend_rejected"}
    async with open_stream(session, api.base, tenant["api_key"], query=query) as stream:
        status, _, _ = await api.post_webhook(secret, json=purchase("F-1", 1000, email="f@ex.com"))
        assert status == 202
        spend = action("spend_bonuses", email="f@ex.com", points=10, orderId="F-2")
        status, body, _ = await api.post_webhook(secret, json=spend, headers=WAIT)
        assert status == 200, body
        over = action("spend_bonuses", email="f@ex.com", points=10_000, orderId="F-3")
        assert (await api.post_webhook(secret, json=over))[0] == 202
        got = await stream.events(2)
    assert [m.event for m in got] == ["bonus_spent", "spend_rejected"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"types": "bonus_awarded,points_spent"}, "types"),
        ({"types": ","}, "types"),
        ({"last_event_id": "garbage!"}, "last_event_id"),
    ],
)
async def test_bad_parameters_are_refused_naming_the_field(api, tenant, session, query, field):
    async with session.get(
        f"{api.base}/api/v1/events/stream",
        params=query,
        headers={"Authorization": f"Bearer {tenant['api_key']}"},
    ) as resp:
        assert resp.status == 422
        body = await resp.json()
    assert body["error"] == "invalid_field" and body["field"] == field


async def test_a_token_beyond_the_end_of_the_topic_is_refused(api, tenant, session):
    # a token from another cluster or from before the topic was re-created: never read as
    # "skip everything up to there"
    token = stream_token.encode([10**9] * 32)
    headers = {"Authorization": f"Bearer {tenant['api_key']}", "Last-Event-ID": token}
    async with session.get(f"{api.base}/api/v1/events/stream", headers=headers) as resp:
        assert resp.status == 422
        body = await resp.json()
    assert body["field"] == "Last-Event-ID" and "beyond the end" in body["reason"]


async def test_a_bad_last_event_id_header_is_refused_naming_it(api, tenant, session):
    headers = {"Authorization": f"Bearer {tenant['api_key']}", "Last-Event-ID": "AAAA"}
    async with session.get(f"{api.base}/api/v1/events/stream", headers=headers) as resp:
        assert resp.status == 422
        assert (await resp.json())["field"] == "Last-Event-ID"


async def test_without_a_valid_api_key_401(api, session):
    url = f"{api.base}/api/v1/events/stream"
    async with session.get(url) as resp:
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    async with session.get(url, headers={"Authorization": "Bearer kpk_nope"}) as resp:
        assert resp.status == 401


async def test_two_shops_each_see_only_their_own_events(api, make_tenant, session):
    a, b = await make_tenant("Stream A"), await make_tenant("Stream B")
    async with (
        open_stream(session, api.base, a["api_key"]) as sa,
        open_stream(session, api.base, b["api_key"]) as sb,
    ):
        orders_a = await post_purchases(api, a, 4)
        orders_b = await post_purchases(api, b, 3)
        # a last purchase of each shop, sent after everything else: once it arrived, any
        # event of the other shop would have come before it
        last_a, last_b = await post_purchases(api, a, 1), await post_purchases(api, b, 1)
        got_a, got_b = await sa.events(5), await sb.events(4)
    assert sorted(orders_of(got_a)) == sorted(orders_a + last_a)
    assert sorted(orders_of(got_b)) == sorted(orders_b + last_b)
    assert {orjson.loads(m.data)["tenant_id"] for m in got_a} == {a["tenant_id"]}
    assert {orjson.loads(m.data)["tenant_id"] for m in got_b} == {b["tenant_id"]}


async def test_resume_after_a_disconnect_has_no_gap_and_no_duplicate(api, tenant, session):
    async with open_stream(session, api.base, tenant["api_key"]) as stream:
        first = await post_purchases(api, tenant, 6)
        seen = await stream.events(2)
        token = stream.last_id
    # disconnected: the other 4 arrive meanwhile (were sent already), then 5 more
    more = await post_purchases(api, tenant, 5)
    await asyncio.sleep(1)  # let them reach Kafka's loyalty.events before resuming
    async with open_stream(session, api.base, tenant["api_key"], last_event_id=token) as stream:
        rest = await stream.events(9)
        later = await post_purchases(api, tenant, 2)
        rest += await stream.events(2)
        resumed_token = stream.last_id
    got = orders_of(seen + rest)
    assert sorted(got) == sorted(first + more + later)  # every order, each exactly once
    # the ?last_event_id= query resumes the same way, from where the header's stream ended
    tail = await post_purchases(api, tenant, 2)
    async with open_stream(
        session, api.base, tenant["api_key"], last_event_id=resumed_token, header=False
    ) as stream:
        assert sorted(orders_of(await stream.events(2))) == sorted(tail)


@pytest.fixture
def second_ingress(stack):
    """An ingress of our own (heartbeat every 0.5 s) that the test may stop and start again,
    on the session's Kafka, Postgres and Redis: the session's ingress stays undisturbed."""
    port = devservices.free_port()
    log_path = stack.data_dir / "logs" / "ingest-sse.log"
    env = {"KOPILKA_HTTP_PORT": str(port), "KOPILKA_EVENT_STREAM_HEARTBEAT_S": str(HEARTBEAT_S)}
    procs = []

    def start():
        procs.append(stack.start_ingest(log_path, env=env))
        return f"http://127.0.0.1:{port}"

    def stop():
        proc = procs.pop()
        proc.stop()
        stack.processes.remove(proc)

    yield start, stop
    while procs:
        stop()


async def test_heartbeats_keep_an_idle_stream_open(api, tenant, session, second_ingress):
    start, _stop = second_ingress
    base = start()
    async with open_stream(session, base, tenant["api_key"]) as stream:
        beats = []
        async with asyncio.timeout(10 * HEARTBEAT_S):
            while len(beats) < 3:
                msg = await stream.message()
                beats += [c for c in msg.comments if c == b"heartbeat"]
                assert msg.data is None  # no event: this shop sent nothing


async def test_resume_across_an_ingress_restart(api, tenant, session, second_ingress):
    start, stop = second_ingress
    base = start()
    async with open_stream(session, base, tenant["api_key"]) as stream:
        before = await post_purchases(api, tenant, 4)  # through the session's ingress
        seen = await stream.events(4)
        token = stream.last_id
    stop()
    during = await post_purchases(api, tenant, 6)  # while our ingress is down
    await asyncio.sleep(1)
    base = start()
    async with open_stream(session, base, tenant["api_key"], last_event_id=token) as stream:
        rest = await stream.events(6)
        after = await post_purchases(api, tenant, 3)
        rest += await stream.events(3)
        token = stream.last_id
    assert orders_of(seen) and sorted(orders_of(seen)) == sorted(before)
    assert sorted(orders_of(rest)) == sorted(during + after)
    # the token means the same to every ingress process: the session's resumes it too
    tail = await post_purchases(api, tenant, 2)
    async with open_stream(session, api.base, tenant["api_key"], last_event_id=token) as stream:
        assert sorted(orders_of(await stream.events(2))) == sorted(tail)
