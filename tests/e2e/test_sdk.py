"""The Python SDK (sdk/python, `kopilka_client`) against the real stack: ingress, Kafka, worker,
Postgres, dispatcher. Placed under tests/e2e so it shares that folder's fixtures (fresh tenants,
edge settings, the loopback receiver) and is marked `connected` like every end-to-end test.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest
from aiohttp import web
from kopilka_client import (
    AsyncKopilkaClient,
    AuthError,
    KopilkaClient,
    NotFound,
    ReconnectPolicy,
    RetryPolicy,
    ValidationError,
    WebhookVerificationError,
    delivery_id,
    verify,
)
from kopilka_client import payloads as sdk_payloads
from outbound_fakes import Receiver, serve

from kopilka.core.settings import PROJECT_ROOT
from kopilka.devstack import devservices

WAIT_S = 10  # Prefer: wait, Kopilka's longest: a fresh stack on a loaded machine needs it


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def shop(make_tenant, set_edge) -> dict:
    """A shop that requires signed webhooks, so every SDK request is verified by Kopilka."""
    tenant = await make_tenant("SDK shop")
    await set_edge(tenant, signature_mode="required")
    return tenant


def client_for(base_url: str, shop: dict, **kw) -> AsyncKopilkaClient:
    return AsyncKopilkaClient(
        base_url,
        webhook_secret=shop["webhook_secret"],
        signing_secret=shop["signing_secret"],
        api_key=shop["api_key"],
        **kw,
    )


async def customer_when(client: AsyncKopilkaClient, predicate, timeout_s=60.0, **who):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            customer = await client.get_customer(**who)
            if predicate(customer):
                return customer
        except NotFound:
            customer = None
        if time.monotonic() > deadline:
            raise AssertionError(f"{who} never matched; last: {customer}")
        await asyncio.sleep(0.2)


async def test_a_signed_purchase_lands_in_the_ledger_and_a_resend_is_a_duplicate(base_url, shop):
    email, order = f"{unique('sdk')}@example.com", unique("SDK-ORDER")
    async with client_for(base_url, shop) as kopilka:
        receipt = await kopilka.purchase(order_id=order, amount=5000, email=email)
        assert receipt.status == "accepted" and receipt.orders == [order]
        assert receipt.webhook_id == delivery_id(
            sdk_payloads.purchase(order_id=order, amount=5000, email=email)
        )
        customer = await customer_when(kopilka, lambda c: c.balance.total == 250, email=email)
        assert customer.email == email and customer.balance.active == 250
        [entry] = customer.ledger
        assert (entry.type, entry.order_id, entry.delta) == ("bonus_awarded", order, 250)

        again = await kopilka.purchase(order_id=order, amount=5000, email=email)
        assert again.duplicate and again.event_id == receipt.event_id
        await asyncio.sleep(1)
        assert (await kopilka.get_customer(email=email)).balance.total == 250


async def test_spend_with_wait_returns_the_outcome(base_url, shop):
    email = f"{unique('spend')}@example.com"
    async with client_for(base_url, shop) as kopilka:
        bought = await kopilka.purchase(
            order_id=unique("BUY"), amount=5000, email=email, wait=WAIT_S
        )
        assert bought.processed and bought.outcome.applied and bought.outcome.balance_after == 250

        spent = await kopilka.spend(
            order_id=unique("PAY"), points=100, email=email, order_amount=1000, wait=WAIT_S
        )
        assert spent.processed, spent
        outcome = spent.outcome
        assert (outcome.status, outcome.balance_after) == ("applied", 150)
        assert [e["type"] for e in outcome.events] == ["bonus_spent"]

        refused = await kopilka.spend(order_id=unique("PAY"), points=1000, email=email, wait=WAIT_S)
        assert (refused.outcome.status, refused.outcome.reason) == (
            "rejected",
            "insufficient_balance",
        )


async def test_registration_referral_batch_and_refund_through_the_sdk(base_url, make_tenant):
    shop = await make_tenant("SDK referral shop", referral_percent="10")
    tag = unique("act")
    referrer, referee = f"{tag}-ref@example.com", f"{tag}-new@example.com"
    async with client_for(base_url, shop) as kopilka:  # this shop takes unsigned webhooks
        joined = await kopilka.register_user(email=referrer, name="Ref")
        assert joined.status == "accepted" and joined.action == "register_user"
        code = (
            await customer_when(kopilka, lambda c: c.referral_code, email=referrer)
        ).referral_code
        second = await kopilka.register_user(email=referee, referral_code=code, wait=WAIT_S)
        [registered] = second.outcome.events
        assert registered["type"] == "customer_registered"
        referrer_id = (await kopilka.get_customer(email=referrer)).id
        assert registered["referrer_id"] == referrer_id

        batch = await kopilka.batch_purchase(
            [
                {"order_id": f"{tag}-1", "amount": 1000, "email": referee},
                {"order_id": f"{tag}-2", "amount": "2000.00", "email": referee},
                {"order_id": f"{tag}-3", "amount": "-1", "email": referee},
            ],
            wait=WAIT_S,
        )
        assert [a["order_id"] for a in batch.accepted] == [f"{tag}-1", f"{tag}-2"]
        [bad] = batch.rejected
        assert (bad["index"], bad["field"]) == (2, "payload.purchases[2].amount")
        assert [o.status for o in batch.outcomes] == ["applied", "applied"]
        kinds = [e["type"] for o in batch.outcomes for e in o.events]
        assert kinds == ["bonus_awarded", "bonus_awarded"]
        # the referrer's award is its own command, on its own customer: read it back
        await customer_when(kopilka, lambda c: c.balance.total == 100, email=referrer)

        refunded = await kopilka.refund(order_id=f"{tag}-2", amount=1000, wait=WAIT_S)
        assert refunded.outcome.applied
        [reversed_] = refunded.outcome.events
        assert (reversed_["type"], reversed_["points"]) == ("bonus_reversed", 50)


async def test_refusals_surface_as_typed_errors_naming_the_field(base_url, shop):
    async with client_for(base_url, shop) as kopilka:
        with pytest.raises(ValidationError) as err:
            await kopilka.purchase(order_id=unique("BAD"), amount="-5", email="a@example.com")
        assert (err.value.status, err.value.field) == (422, "payload.amount")
        with pytest.raises(ValidationError) as err:
            await kopilka.spend(order_id=unique("BAD"), points=10, email="not-an-email")
        assert err.value.field == "payload.email"
        with pytest.raises(NotFound):
            await kopilka.get_customer(email=f"{unique('nobody')}@example.com")
    forged = {**shop, "signing_secret": "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="}
    async with client_for(base_url, forged) as kopilka:
        with pytest.raises(AuthError) as err:
            await kopilka.purchase(order_id=unique("BAD"), amount=1, email="a@example.com")
        assert (err.value.status, err.value.field) == (401, "webhook-signature")


class FlakyProxy:
    """A real HTTP hop in front of the ingress. `refuse_first`: the first request is answered
    503 + Retry-After without reaching Kopilka; `lose_first`: it reaches Kopilka, which stores
    it, but the client is told 503 (an answer lost on the way back)."""

    def __init__(self, upstream: str, mode: str) -> None:
        self.upstream, self.mode = upstream, mode
        self.requests: list[tuple[float, dict[str, str]]] = []
        self.upstream_answers: list[int] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((time.monotonic(), dict(request.headers)))
        first = len(self.requests) == 1
        if first and self.mode == "refuse_first":
            return web.json_response(
                {"error": "broker_unavailable", "field": None, "reason": "retry later"},
                status=503,
                headers={"Retry-After": "1"},
            )
        forward = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.upstream + request.path_qs, data=body, headers=forward) as resp,
        ):
            answer, status = await resp.read(), resp.status
        self.upstream_answers.append(status)
        if first and self.mode == "lose_first":
            return web.json_response(
                {"error": "broker_unavailable", "field": None, "reason": "lost"},
                status=503,
                headers={"Retry-After": "0"},
            )
        return web.Response(body=answer, status=status, content_type="application/json")


@pytest.fixture
async def proxy(base_url):
    runners = []

    async def start(mode: str) -> tuple[FlakyProxy, str]:
        flaky = FlakyProxy(base_url, mode)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", flaky.handle)
        runner, port = await serve(app)
        runners.append(runner)
        return flaky, f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_a_503_is_retried_after_its_retry_after_and_then_lands(base_url, shop, proxy):
    flaky, url = await proxy("refuse_first")
    email, order = f"{unique('retry')}@example.com", unique("RETRY")
    async with client_for(url, shop, retry=RetryPolicy(max_attempts=3)) as via_proxy:
        started = time.monotonic()
        receipt = await via_proxy.purchase(order_id=order, amount=2000, email=email)
        elapsed = time.monotonic() - started
    assert receipt.status == "accepted" and receipt.attempts == 2
    assert elapsed >= 1.0  # Retry-After: 1 was honoured
    (t1, h1), (t2, h2) = flaky.requests
    assert t2 - t1 >= 1.0
    assert h1["webhook-id"] == h2["webhook-id"] == receipt.webhook_id
    assert flaky.upstream_answers == [202]
    async with client_for(base_url, shop) as kopilka:
        await customer_when(kopilka, lambda c: c.balance.total == 100, email=email)


async def test_a_retry_after_a_lost_answer_is_a_duplicate_and_awards_once(base_url, shop, proxy):
    flaky, url = await proxy("lose_first")
    email, order = f"{unique('lost')}@example.com", unique("LOST")
    async with client_for(url, shop) as via_proxy:
        receipt = await via_proxy.purchase(order_id=order, amount=3000, email=email)
    assert flaky.upstream_answers == [202, 200]  # stored once; the retry was a duplicate
    assert receipt.duplicate and receipt.attempts == 2
    async with client_for(base_url, shop) as kopilka:
        customer = await customer_when(kopilka, lambda c: c.balance.total == 150, email=email)
        await asyncio.sleep(1)
        customer = await kopilka.get_customer(email=email)
        assert customer.balance.total == 150 and len(customer.ledger) == 1


async def test_the_sync_client_sends_and_reads(base_url, shop):
    order = unique("SYNC")

    def run() -> tuple:
        with KopilkaClient(
            base_url,
            webhook_secret=shop["webhook_secret"],
            signing_secret=shop["signing_secret"],
            api_key=shop["api_key"],
        ) as kopilka:
            receipt = kopilka.purchase(
                order_id=order, amount=1000, phone="+7 999 555-12-34", wait=WAIT_S
            )
            deadline = time.monotonic() + 30  # the outcome comes from the worker; the read
            while True:  # API from Postgres, a moment later
                customer = kopilka.get_customer(phone="8 (999) 555-12-34")
                if customer.balance.total or time.monotonic() > deadline:
                    return receipt, customer
                time.sleep(0.2)

    receipt, customer = await asyncio.to_thread(run)
    assert receipt.processed and receipt.outcome.balance_after == 50
    assert customer.phone == "+79995551234" and customer.balance.total == 50


async def test_verify_accepts_a_real_kopilka_delivery_and_refuses_a_forged_one(api, base_url, shop):
    receiver = Receiver()
    await receiver.start()
    try:
        path = f"/hooks/{uuid.uuid4().hex[:12]}"
        status, endpoint = await api.admin(
            "POST",
            f"tenants/{shop['tenant_id']}/endpoints",
            {"url": receiver.base + path, "event_types": ["bonus_awarded"]},
        )
        assert status == 201, endpoint
        order = unique("HOOK")
        async with client_for(base_url, shop) as kopilka:
            await kopilka.purchase(order_id=order, amount=5000, email=f"{order}@example.com")
        [delivery] = await receiver.wait_for(path, 1)
    finally:
        await receiver.stop()

    event = verify(delivery.headers, delivery.body, endpoint["secret"])
    assert (event["type"], event["order_id"], event["points"]) == ("bonus_awarded", order, 250)
    assert event["event_id"] == delivery.headers["webhook-id"]
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(delivery.headers, delivery.body.replace(b"250", b"999"), endpoint["secret"])
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(delivery.headers, delivery.body, shop["signing_secret"])  # another secret


# ------------------------------------------------------------------------ the live event stream

# idle_timeout_s above twice the session ingress's heartbeat (15 s): a shorter one cuts a
# connection while the server is still reading the backlog, and reconnects for ever
FAST_RECONNECT = ReconnectPolicy(
    backoff=RetryPolicy(base_delay_s=0.2, max_delay_s=1.0), idle_timeout_s=35.0
)


async def until(predicate, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s}s")
        await asyncio.sleep(0.05)


async def follow(stream, into: list) -> None:
    async for event in stream:
        into.append(event)


async def test_the_stream_iterators_resume_from_the_last_event_id(base_url, shop):
    tag = unique("S")
    async with client_for(base_url, shop) as kopilka:
        stream = kopilka.events(types=["bonus_awarded", "bonus_spent"], policy=FAST_RECONNECT)
        got: list = []
        task = asyncio.create_task(follow(stream, got))
        try:  # the first message tells the stream's position: from then on nothing is missed
            await until(lambda: stream.last_event_id is not None, what="stream position")
            first = [f"{tag}-{i}" for i in range(3)]
            for order in first:
                await kopilka.purchase(order_id=order, amount=1000, email=f"{tag}@example.com")
            await until(lambda: len(got) == 3, what="3 events")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await stream.aclose()
        token = stream.last_event_id
        assert [(e.type, e.data["order_id"]) for e in got] == [("bonus_awarded", o) for o in first]
        assert {e.data["tenant_id"] for e in got} == {shop["tenant_id"]}

        later = [f"{tag}-{i}" for i in range(3, 5)]
        for order in later:  # while nobody listens
            await kopilka.purchase(order_id=order, amount=1000, email=f"{tag}@example.com")
        await kopilka.spend(order_id=f"{tag}-pay", points=10, email=f"{tag}@example.com")
        await kopilka.register_user(email=f"{tag}-other@example.com")  # filtered out

    def resume() -> list:
        with KopilkaClient(base_url, api_key=shop["api_key"]) as sync_client:
            resumed = sync_client.events(
                types=["bonus_awarded", "bonus_spent"], last_event_id=token, policy=FAST_RECONNECT
            )
            events = [next(resumed) for _ in range(3)]
            resumed.close()
            return events

    rest = await asyncio.wait_for(asyncio.to_thread(resume), 60)
    assert sorted((e.type, e.data["order_id"]) for e in rest) == sorted(
        [("bonus_awarded", o) for o in later] + [("bonus_spent", f"{tag}-pay")]
    )  # no gap, nothing from before the token


@pytest.fixture
def own_ingress(stack):
    """An ingress of this test's own (heartbeat every 0.5 s) that it may stop and start on the
    same port, on the session's Kafka, Postgres and Redis."""
    port = devservices.free_port()
    log_path = stack.data_dir / "logs" / "ingest-sdk.log"
    env = {"KOPILKA_HTTP_PORT": str(port), "KOPILKA_EVENT_STREAM_HEARTBEAT_S": "0.5"}
    procs = []

    def start() -> str:
        procs.append(stack.start_ingest(log_path, env=env))
        return f"http://127.0.0.1:{port}"

    def stop() -> None:
        proc = procs.pop()
        proc.stop()
        stack.processes.remove(proc)

    yield start, stop
    while procs:
        stop()


async def test_the_iterator_reconnects_by_itself_across_an_ingress_restart(
    base_url, shop, own_ingress
):
    start, stop = own_ingress
    stream_base = start()
    tag = unique("R")
    orders = [f"{tag}-{i}" for i in range(5)]
    async with (
        client_for(base_url, shop) as sender,
        client_for(stream_base, shop) as listener,
    ):
        stream = listener.events(policy=FAST_RECONNECT)
        got: list = []
        task = asyncio.create_task(follow(stream, got))
        try:
            await until(lambda: stream.last_event_id is not None, what="stream position")
            for order in orders[:2]:
                await sender.purchase(order_id=order, amount=1000, email=f"{tag}@example.com")
            await until(lambda: len(got) == 2, what="2 events")
            stop()  # the stream's ingress goes away; the iterator keeps trying
            for order in orders[2:]:
                await sender.purchase(order_id=order, amount=1000, email=f"{tag}@example.com")
            await asyncio.sleep(1)
            start()
            await until(lambda: len(got) == 5, what="the 3 events sent while it was down")
            await asyncio.sleep(1)  # nothing more may come: no repeat
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await stream.aclose()
    assert [e.data["order_id"] for e in got][:2] == orders[:2]
    assert sorted(e.data["order_id"] for e in got) == orders
    assert len({e.data["event_id"] for e in got}) == 5


async def test_the_readme_example_runs_as_written(base_url, shop):
    """The five-minute example of sdk/python/README.md, with this shop's credentials."""
    readme = (PROJECT_ROOT / "sdk" / "python" / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    for placeholder, value in {
        "http://127.0.0.1:8080": base_url,
        "whk_…": shop["webhook_secret"],
        "whsec_…": shop["signing_secret"],
        "kpk_…": shop["api_key"],
    }.items():
        assert placeholder in code
        code = code.replace(placeholder, value)
    printed: list[tuple] = []
    namespace = {"print": lambda *args: printed.append(args)}
    await asyncio.to_thread(exec, compile(code, "sdk/python/README.md", "exec"), namespace)
    namespace["kopilka"].close()
    accepted, paid, balance, refused = printed
    assert accepted[0] == "accepted"
    assert paid == ("paid, balance now", 150)
    assert balance[0] in (0, 250, 150) and balance[1] == "5"  # the read model catching up
    assert refused == ("payload.amount", "must not be negative")
