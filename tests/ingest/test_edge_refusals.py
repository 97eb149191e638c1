"""The webhook route and the admin guard over real HTTP (aiohttp's test server), with in-memory
doubles for Postgres and Kafka: database down, guessed secrets, wrong admin tokens.

What Postgres and Kafka really do is in tests/e2e/test_edge_*.py; here the point is each
branch of the edge's own decisions."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from ingest.admin_auth import admin_only
from ingest.attempts import FailedAttempts
from ingest.context import (
    ADMIN_FAILURES,
    BACKGROUND,
    CUSTOMERS,
    LIMITER,
    ORDER_ROUTES,
    OUTCOMES,
    PRODUCER,
    REPLAY,
    SETTINGS,
    TENANTS,
    UNKNOWN_SECRETS,
)
from ingest.order_routes import LocalOrderRoutes
from ingest.ratelimit import LocalLimiter, Quota
from ingest.replay import LocalReplayGuard
from ingest.responses import database_unavailable, json_errors, json_response
from ingest.webhooks import receive_webhook
from kopilka.core import standard_webhooks
from kopilka.core.settings import Settings
from kopilka.directory.tenants import TenantDirectory, digest

SECRET = "whk_" + "k" * 32
SIGNING = standard_webhooks.new_secret()
TOKEN = "admin-token-for-tests"


class FakePool:
    def __init__(self) -> None:
        self.rows: dict[bytes, dict] = {
            digest(SECRET): {
                "id": "8a4c2a3e-1d5b-4f7e-9a1c-2b3d4e5f6a7b",
                "name": "Shop",
                "active": True,
                "rules": "{}",
                "revision": 1,
                "signature_mode": "optional",
                "rate_limit_per_minute": None,
                "rate_limit_burst": None,
                "max_body_bytes": None,
                "signing_secrets": [SIGNING.encode()],
            }
        }
        self.queries = 0
        self.down = False

    async def fetchrow(self, _query, *args):
        self.queries += 1
        if self.down:
            raise ConnectionRefusedError(111, "connection refused")
        return self.rows.get(args[0])


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send_and_wait(self, topic, value, key=None):
        self.sent.append((topic, value))

    async def send(self, topic, value, key=None):
        """As aiokafka's: queue the record, return the future of its ack (here: acked)."""
        self.sent.append((topic, value))
        acked = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


class DownCustomers:
    """The customer directory with Postgres gone."""

    async def find(self, *_args):
        raise ConnectionRefusedError(111, "connection refused")

    async def check_referrer(self, *_args):
        raise ConnectionRefusedError(111, "connection refused")


class NoOutcomes:
    def register(self, *_args):
        raise AssertionError("Prefer: wait is not used here")

    def forget(self, *_args):
        pass


@pytest.fixture
def pool() -> FakePool:
    return FakePool()


@pytest.fixture
async def client(pool):
    settings = Settings(admin_token=SecretStr(TOKEN), rate_limit_per_minute=100_000)
    app = web.Application(middlewares=[json_errors, database_unavailable])
    app[SETTINGS] = settings
    app[TENANTS] = TenantDirectory(pool, ttl_s=0.05, backoff_s=0.0)
    app[LIMITER] = limiter = LocalLimiter()
    app[REPLAY] = LocalReplayGuard(600)
    app[ORDER_ROUTES] = LocalOrderRoutes(600)
    app[UNKNOWN_SECRETS] = FailedAttempts(limiter, "unknown-secret", Quota(5, 5))
    app[ADMIN_FAILURES] = FailedAttempts(limiter, "admin-token", Quota(3, 3))
    app[CUSTOMERS] = DownCustomers()
    app[PRODUCER] = FakeProducer()
    app[BACKGROUND] = set()
    app[OUTCOMES] = NoOutcomes()

    @admin_only
    async def secret_area(_request):
        return json_response({"ok": True})

    async def needs_database(_request):
        raise ConnectionRefusedError(111, "connection refused")

    app.router.add_post("/api/webhook/{secret}", receive_webhook)
    app.router.add_get("/api/admin/area", secret_area)
    app.router.add_get("/db", needs_database)
    async with TestClient(TestServer(app)) as client:
        yield client


def purchase(order_id: str = "O-1") -> bytes:
    payload = {"email": "a@example.com", "orderId": order_id, "amount": 100}
    return json.dumps({"action": "purchase", "payload": payload}).encode()


async def post(client, body: bytes, secret: str = SECRET, headers=None):
    resp = await client.post(
        f"/api/webhook/{secret}",
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    return resp.status, await resp.json(), resp.headers


async def test_a_known_shop_is_accepted_while_postgres_is_down(client, pool):
    assert (await post(client, purchase("O-1")))[0] == 202
    pool.down = True
    await asyncio.sleep(
        0.06
    )  # past the tenant cache's TTL: the refresh fails, the cache serves stale
    for i in range(5):
        status, body, _ = await post(client, purchase(f"O-{i + 2}"))
        assert status == 202, body
    assert len(client.app[PRODUCER].sent) == 6


async def test_an_unknown_shop_while_postgres_is_down_is_503_with_retry_after(client, pool):
    pool.down = True
    status, body, headers = await post(client, purchase(), secret="whk_" + "u" * 32)
    assert (status, body["error"]) == (503, "unavailable")
    assert int(headers["Retry-After"]) > 0


async def test_a_referrer_check_failing_on_the_database_is_503_and_frees_the_webhook_id(
    client, pool
):
    body = json.dumps(
        {
            "action": "register_user",
            "payload": {"email": "new@example.com", "referrerEmail": "old@example.com"},
        }
    ).encode()
    signed = standard_webhooks.headers(SIGNING, "msg_referral_1", int(time.time()), body)
    status, answer, headers = await post(client, body, headers=signed)
    assert (status, answer["error"]) == (503, "unavailable"), answer
    assert int(headers["Retry-After"]) > 0
    replay = client.app[REPLAY]
    tenant_id = pool.rows[digest(SECRET)]["id"]
    assert await replay.claim(tenant_id, "msg_referral_1", "probe") is None  # released
    await replay.release(tenant_id, "msg_referral_1")
    # a purchase needs no customer look-up at the edge: accepted, database or not
    signed = standard_webhooks.headers(SIGNING, "msg_referral_2", int(time.time()), purchase())
    assert (await post(client, purchase(), headers=signed))[0] == 202


async def test_guessed_secrets_are_throttled_per_ip_without_querying(client, pool):
    assert (await post(client, purchase("O-0")))[0] == 202  # a shop this process has seen
    for i in range(5):
        status, body, _ = await post(client, purchase(), secret=f"whk_guess{i:028d}")
        assert (status, body["error"]) == (404, "unknown_webhook")
    status, body, headers = await post(client, purchase(), secret="whk_guess" + "9" * 28)
    assert (status, body["error"]) == (429, "too_many_failures")
    assert int(headers["Retry-After"]) > 0
    queries = pool.queries
    for i in range(20):
        status, _, _ = await post(client, purchase(), secret=f"whk_more{i:029d}")
        assert status == 429
    assert pool.queries == queries  # a blocked guesser costs no query
    status, body, _ = await post(client, purchase())  # the shop seen before: unaffected
    assert status == 202, body
    status, body, _ = await post(client, purchase(), secret="whk_" + "n" * 32)
    assert status == 429  # a shop never seen here waits too: it retries after Retry-After


async def test_secrets_not_shaped_like_ours_cost_no_query(client, pool):
    for secret in ("x", "whk_short", "a" * 200, "%FF%FE", "whk_" + "z" * 120):
        status, _, _ = await post(client, purchase(), secret=secret)
        assert status in (404, 429)
    assert pool.queries == 0


async def test_wrong_admin_tokens_are_throttled_per_ip(client):
    async def area(token: str):
        resp = await client.get("/api/admin/area", headers={"Authorization": f"Bearer {token}"})
        return resp.status, await resp.json(), resp.headers

    assert (await area(TOKEN))[0] == 200
    for _ in range(3):
        assert (await area("guess"))[0] == 401
    status, body, headers = await area("guess")
    assert (status, body["error"]) == (429, "too_many_failures")
    assert int(headers["Retry-After"]) > 0
    status, _, _ = await area(TOKEN)  # blocked: the right token waits too, or guessing goes on
    assert status == 429
    resp = await client.get("/api/admin/area", headers={"Authorization": "Bearer \udcff"})
    assert resp.status == 429


async def test_a_route_that_needs_the_database_answers_503_not_500(client):
    resp = await client.get("/db")
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) > 0
    assert (await resp.json())["error"] == "unavailable"


async def test_an_answer_with_invalid_unicode_is_still_json():
    resp = json_response({"field": "a\ud800b"})
    assert json.loads(resp.body) == {"field": "a\ud800b"}


async def test_control_characters_over_http_are_422_naming_the_field(client):
    body = purchase("O-\u0000").replace(b"\\u0000", b"\\u0000")
    status, answer, _ = await post(client, body)
    assert (status, answer["field"]) == (422, "payload.orderId")
    status, answer, _ = await post(client, b'{"action":"purchase","payload":{"name":"\xff"}}')
    assert (status, answer["field"]) == (422, "payload.name")
    status, answer, _ = await post(client, b'{"action":"purchase","payload":{"\\udfff":1}}')
    assert (status, answer["field"]) == (422, "payload.\\udfff")


ANY_TEXT = st.one_of(  # any Unicode, control characters and lone surrogates included
    st.text(max_size=16),
    st.tuples(st.text(max_size=8), st.integers(0xD800, 0xDFFF).map(chr)).map("".join),
)
PURCHASE = st.fixed_dictionaries(
    {"email": st.just("a@example.com"), "orderId": ANY_TEXT, "amount": st.just(5)},
    optional={"name": ANY_TEXT, "description": ANY_TEXT},
).map(lambda p: json.dumps({"action": "purchase", "payload": p}).encode())
BODIES = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    PURCHASE,
    st.recursive(
        st.none() | st.booleans() | st.integers() | ANY_TEXT,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
        max_leaves=16,
    ).flatmap(
        lambda payload: st.sampled_from(
            ["purchase", "batch_purchase", "register_user", "spend_bonuses", "refund", "x"]
        ).map(lambda a: json.dumps({"action": a, "payload": payload}).encode())
    ),
)
CONTENT_TYPES = st.sampled_from(
    [None, "application/json", "application/x-www-form-urlencoded", "text/plain", "a/b; charset=x"]
)


def test_no_body_gets_a_5xx():
    """Whatever arrives, the answer is a 2xx or 4xx in the one JSON shape, never a 5xx."""
    loop = asyncio.new_event_loop()
    pool = FakePool()

    async def start():
        app = web.Application(middlewares=[json_errors, database_unavailable])
        limiter = LocalLimiter()
        app[SETTINGS] = Settings(rate_limit_per_minute=10**9)
        app[TENANTS] = TenantDirectory(pool, ttl_s=600)
        app[LIMITER] = limiter
        app[REPLAY] = LocalReplayGuard(600)
        app[ORDER_ROUTES] = LocalOrderRoutes(600)
        app[UNKNOWN_SECRETS] = FailedAttempts(limiter, "unknown-secret", Quota(5, 5))
        app[ADMIN_FAILURES] = FailedAttempts(limiter, "admin-token", Quota(3, 3))
        app[CUSTOMERS] = DownCustomers()
        app[PRODUCER] = FakeProducer()
        app[BACKGROUND] = set()
        app[OUTCOMES] = NoOutcomes()
        app.router.add_post("/api/webhook/{secret}", receive_webhook)
        client = TestClient(TestServer(app))
        await client.start_server()
        return client

    client = loop.run_until_complete(start())

    async def one(body: bytes, content_type: str | None):
        headers = {"Content-Type": content_type} if content_type else {}
        resp = await client.post(f"/api/webhook/{SECRET}", data=body, headers=headers)
        answer = await resp.json(content_type=None)
        return resp.status, answer

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=BODIES, content_type=CONTENT_TYPES)
    def check(body, content_type):
        status, answer = loop.run_until_complete(one(body, content_type))
        assert status < 500, (status, answer)
        if status >= 400:
            assert set(answer) == {"error", "field", "reason"}, answer

    try:
        check()
    finally:
        loop.run_until_complete(client.close())
        loop.close()


@pytest.mark.parametrize(
    "header,status,field",
    [
        (b"Content-Type: application/json; x=\xff", 415, "Content-Type"),
        (b"Content-Type: application/json; charset=\xff", 415, "Content-Type"),
        (
            b"webhook-id: \xff\r\nwebhook-timestamp: {now}\r\nwebhook-signature: v1,AAAA",
            401,
            "webhook-id",
        ),
        (b"X-Signature: \xff", 401, "x-signature"),
    ],
)
async def test_header_bytes_that_are_not_utf8_get_a_4xx_naming_the_header(
    client, header, status, field
):
    """aiohttp hands such bytes on as lone surrogates; encoding them again used to raise (500)."""
    body = purchase()
    header = header.replace(b"{now}", str(int(time.time())).encode())
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        f"POST /api/webhook/{SECRET} HTTP/1.1\r\nHost: x\r\n".encode()
        + header
        + f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()), answer
    assert json.loads(payload)["field"] == field
