"""Every process serves Prometheus metrics on its own port, and the figures move under load.

The ingress serves /metrics on its HTTP port; the stack gives the worker and the dispatcher a
free port each (KOPILKA_WORKER_METRICS_PORT, KOPILKA_DISPATCH_METRICS_PORT). A small load (a
shop with an outbound endpoint and a Telegram chat, purchases) must move the ingress's status
counter and latency histogram, every stage of the worker (agents, ledger, sends, lag, tables),
and the dispatcher's attempts, latency, outbox depth and Telegram sends.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
import yaml
from outbound_fakes import Receiver
from payloads import action, purchase
from prometheus_client.parser import text_string_to_metric_families

from kopilka.core.settings import PROJECT_ROOT
from kopilka.devstack import devservices

pytestmark = pytest.mark.connected

LOAD = 20
OR_ZERO = " or vector(0)"  # a failure panel's 0 when nothing failed
FAILURE_ONLY = {"Retries/s by step", "Produce errors/s"}  # no failure in this load


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one /metrics page."""
    async with session.get(url) as resp:
        assert resp.status == 200, url
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples: dict, name: str, **labels) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def series(samples: dict, name: str) -> list[dict]:
    return [dict(ls) for (n, ls) in samples if n == name]


@pytest.fixture
def urls(stack, base_url) -> dict[str, str]:
    worker, dispatch = stack.process("worker"), stack.process("dispatch")
    return {
        "ingress": f"{base_url}/metrics",
        "worker": f"http://127.0.0.1:{worker.extra['metrics_port']}/metrics",
        "dispatch": f"http://127.0.0.1:{dispatch.extra['metrics_port']}/metrics",
    }


async def wait_until(session, url: str, check, what: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        samples = await scrape(session, url)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never held within {timeout_s}s at {url}")
        await asyncio.sleep(0.5)


async def test_each_process_has_its_own_port(urls):
    ports = {url.split(":")[2].split("/")[0] for url in urls.values()}
    assert len(ports) == 3, urls


async def test_metrics_move_under_load(api, tenant, stack, urls):
    receiver = Receiver()
    await receiver.start()
    try:
        await _load_and_check(api, tenant, stack, urls, receiver)
    finally:
        await receiver.stop()


async def _load_and_check(api, tenant, stack, urls, receiver) -> None:
    headers = {"Authorization": f"Bearer {stack.env['KOPILKA_ADMIN_TOKEN']}"}
    admin = f"{api.base}/api/admin/tenants/{tenant['tenant_id']}"
    path = f"/hooks/{uuid.uuid4().hex[:12]}"
    async with api.session.post(
        f"{admin}/endpoints",
        json={"url": receiver.base + path, "event_types": ["bonus_awarded"]},
        headers=headers,
    ) as resp:
        assert resp.status == 201, await resp.text()
    async with api.session.put(
        f"{admin}/telegram/chats/{uuid.uuid4().int % 10**9 + 10**9}",
        json={"event_types": ["bonus_awarded"]},
        headers=headers,
    ) as resp:
        assert resp.status == 200, await resp.text()

    session = api.session
    before = {name: await scrape(session, url) for name, url in urls.items()}

    prefix = uuid.uuid4().hex[:8]
    for i in range(LOAD):
        status, body, _ = await api.post_webhook(
            tenant["webhook_secret"],
            json=purchase(f"M-{prefix}-{i}", 1000 + i, email=f"m{i}-{prefix}@example.com"),
        )
        assert status == 202, body
    await receiver.wait_for(path, LOAD, timeout_s=60)

    # ingress: the 202s counted, each one's latency observed
    ingress = await scrape(session, urls["ingress"])
    b = before["ingress"]
    moved = total(ingress, "kopilka_webhook_requests_total", status="202")
    assert moved - total(b, "kopilka_webhook_requests_total", status="202") >= LOAD
    assert (
        total(ingress, "kopilka_webhook_seconds_count") - total(b, "kopilka_webhook_seconds_count")
        >= LOAD
    )
    accepted = "kopilka_webhooks_accepted_total"
    assert (
        total(ingress, accepted, action="purchase") - total(b, accepted, action="purchase") >= LOAD
    )

    # worker: every agent on the path took the records in and finished them (a record of
    # loyalty.commands may carry several commands: the ledger's count them as commands applied)
    b = before["worker"]
    least = {"normalize": LOAD, "ledger": 1}

    def worker_moved(s: dict) -> bool:
        return all(
            total(s, metric, agent=agent) - total(b, metric, agent=agent) >= least[agent]
            for agent in least
            for metric in ("kopilka_agent_records_in_total", "kopilka_agent_records_out_total")
        ) and (
            total(s, "kopilka_ledger_commands_applied_total", type="purchase")
            - total(b, "kopilka_ledger_commands_applied_total", type="purchase")
            >= LOAD
        )

    worker = await wait_until(session, urls["worker"], worker_moved, "agents counted the load")
    for metric in (
        "kopilka_agent_processing_seconds_count",
        "kopilka_agent_record_age_seconds_count",
    ):
        assert total(worker, metric, agent="ledger") - total(b, metric, agent="ledger") >= 1
    assert (
        total(worker, "kopilka_worker_records_sent_total", topic="loyalty.events")
        - total(b, "kopilka_worker_records_sent_total", topic="loyalty.events")
        >= LOAD
    )
    assert (
        total(worker, "kopilka_worker_messages_in_total", topic="webhooks.raw")
        - total(b, "kopilka_worker_messages_in_total", topic="webhooks.raw")
        >= LOAD
    )
    assert total(worker, "kopilka_table_operations_total", op="set") > total(
        b, "kopilka_table_operations_total", op="set"
    )
    # the sampler: lag of every assigned partition (caught up: 0 allowed), table sizes, the
    # RocksDB memory (memtables and the shared block cache)
    worker = await wait_until(
        session,
        urls["worker"],
        lambda s: (
            {ls["topic"] for ls in series(s, "kopilka_consumer_lag")} >= {"webhooks.raw"}
            and total(s, "kopilka_table_keys") > 0
            and total(s, "kopilka_table_store_memory_bytes", kind="memtables") > 0
        ),
        "lag, table keys and the store's memory sampled",
    )
    assert {ls["kind"] for ls in series(worker, "kopilka_table_store_memory_bytes")} == {
        "memtables",
        "block_cache",
    }
    assert {ls["topic"] for ls in series(worker, "kopilka_consumer_lag")} >= {
        "webhooks.raw",
        "loyalty.commands",
    }
    assert all("tenant" not in ls for ls in series(worker, "kopilka_consumer_lag"))

    # dispatcher: the deliveries attempted and timed, the outboxes sampled, Telegram tried
    b = before["dispatch"]

    def dispatch_moved(s: dict) -> bool:
        return (
            total(s, "kopilka_webhook_delivery_attempts_total", outcome="succeeded")
            - total(b, "kopilka_webhook_delivery_attempts_total", outcome="succeeded")
            >= LOAD
            and total(s, "kopilka_telegram_sends_total") > total(b, "kopilka_telegram_sends_total")
            and series(s, "kopilka_outbox_pending")
        )

    dispatch = await wait_until(session, urls["dispatch"], dispatch_moved, "deliveries counted")
    assert (
        total(dispatch, "kopilka_webhook_delivery_seconds_count", outcome="succeeded")
        - total(b, "kopilka_webhook_delivery_seconds_count", outcome="succeeded")
        >= LOAD
    )
    assert {ls["outbox"] for ls in series(dispatch, "kopilka_outbox_pending")} == {
        "webhooks",
        "telegram",
    }
    assert series(dispatch, "kopilka_webhook_disabled_endpoints")


# ------------------------------------------------------------------ a real Prometheus server
PROMETHEUS = shutil.which("prometheus")
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "kopilka.json"
ALERTS = PROJECT_ROOT / "deploy" / "prometheus" / "alerts.yml"


@pytest.fixture
def prometheus(urls, tmp_path: Path):
    """Debian's Prometheus scraping the test stack every second, with Kopilka's alert rules."""
    if PROMETHEUS is None:
        pytest.skip("prometheus is missing: run deploy/dev/system-deps.sh (as root)")
    jobs = {
        "ingress": "kopilka-ingress",
        "worker": "kopilka-worker",
        "dispatch": "kopilka-dispatch",
    }
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": jobs[name], "static_configs": [{"targets": [url.split("/")[2]]}]}
            for name, url in urls.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = devservices.free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # closed below, after the server
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _family(sample: str) -> str:
    """The metric family a sample name in a query belongs to (its `# TYPE` line's name)."""
    return re.sub(r"_(bucket|sum|count)$", "", sample)


async def query(session, base: str, expr: str) -> list:
    async with session.get(f"{base}/api/v1/query", params={"query": expr}) as resp:
        body = await resp.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


async def test_prometheus_scrapes_every_process_and_every_panel_has_data(
    api, tenant, stack, prometheus, urls
):
    session = api.session

    async def until(check, what: str, timeout_s: float = 60.0):
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                got = await check()
            except aiohttp.ClientError:
                got = None
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} never held within {timeout_s}s")
            await asyncio.sleep(1.0)

    async def all_up():
        result = await query(session, prometheus, 'up{job=~"kopilka-.*"} == 1')
        return len(result) == 3

    await until(all_up, "every Kopilka process scraped")
    async with session.get(f"{prometheus}/api/v1/rules") as resp:
        rules = (await resp.json())["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {"KopilkaWorkerDown"}

    # a load that touches every panel: purchases with an endpoint and a Telegram chat, and a
    # refund of an unknown order (a dead letter)
    receiver = Receiver()
    await receiver.start()
    try:
        headers = {"Authorization": f"Bearer {stack.env['KOPILKA_ADMIN_TOKEN']}"}
        admin = f"{api.base}/api/admin/tenants/{tenant['tenant_id']}"
        path = f"/hooks/{uuid.uuid4().hex[:12]}"
        async with session.post(
            f"{admin}/endpoints",
            json={"url": receiver.base + path, "event_types": ["bonus_awarded"]},
            headers=headers,
        ) as resp:
            assert resp.status == 201
        async with session.put(
            f"{admin}/telegram/chats/{uuid.uuid4().int % 10**9 + 10**9}",
            json={"event_types": ["bonus_awarded"]},
            headers=headers,
        ) as resp:
            assert resp.status == 200
        prefix = uuid.uuid4().hex[:8]
        for i in range(LOAD):
            status, _, _ = await api.post_webhook(
                tenant["webhook_secret"],
                json=purchase(f"P-{prefix}-{i}", 500 + i, email=f"p{i}-{prefix}@example.com"),
            )
            assert status == 202
        status, _, _ = await api.post_webhook(
            tenant["webhook_secret"], json=action("refund", orderId=f"NO-SUCH-{prefix}")
        )
        assert status == 202
        await receiver.wait_for(path, LOAD, timeout_s=60)
    finally:
        await receiver.stop()

    async def dead_letter_scraped():
        return await query(session, prometheus, "kopilka_dead_letters_total")

    await until(dead_letter_scraped, "the dead letter scraped")
    panels = json.loads(DASHBOARD.read_text())["panels"]
    targets = [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]
    # A failure panel shows 0 when nothing failed (`or vector(0)`), which would answer whatever
    # the metric's name: every metric a panel names must be one a process exports, and each
    # panel's own figure (without the 0) must have data, but those of failures this load has not.
    pages = "".join([await (await session.get(url)).text() for url in urls.values()])
    unknown = [
        (title, name)
        for title, expr in targets
        for name in re.findall(r"kopilka_[a-z0-9_]+", expr)
        if not re.search(rf"^# TYPE {_family(name)} ", pages, re.M)
    ]
    assert not unknown, unknown
    empty = []
    for title, expr in targets:
        if title in FAILURE_ONLY:
            continue

        async def has_data(expr=expr):
            return await query(session, prometheus, expr.removesuffix(OR_ZERO))

        try:
            await until(has_data, expr, timeout_s=20)
        except AssertionError:
            empty.append((title, expr))
    assert not empty, empty
