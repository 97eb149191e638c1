"""One shop on two workers, on the real broker: the load spreads, and a kill -9 loses nothing.

20,000 purchases of one shop (half as single webhooks, half in batches of 1,000) go to a stack
running two worker processes. Each worker must apply at least 30 % of them, read from its
`ledger_progress` log lines. Then 6,000 more arrive while the second worker is killed -9
mid-load. Every order ends awarded exactly once, every balance exact.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest

from kopilka.devstack.diagnosis import group_lag, log_summary

pytestmark = pytest.mark.disruptive  # a second worker joins, then dies: rebalances for everyone

SINGLES, BATCHES, BATCH = 10_000, 10, 1_000
LATE_SINGLES = 6_000
CUSTOMERS = 2_000
PERCENT = 5


def _purchase(i: int) -> dict:
    return {
        "email": f"so{i % CUSTOMERS}@scale.example.com",
        "orderId": f"SO-{i}",
        "amount": 100 + i % 7,
    }


def _expected_balances(orders: range) -> dict[str, int]:
    balances: dict[str, int] = {}
    for i in orders:
        p = _purchase(i)
        balances[p["email"]] = balances.get(p["email"], 0) + p["amount"] * PERCENT // 100
    return balances


async def _post_all(url: str, bodies: list[dict], concurrency: int = 48) -> int:
    """POST every body until it is accepted (a shop retries 503s); the number of 202s."""
    queue = list(reversed(bodies))
    accepted = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while queue:
            body = queue.pop()
            for _ in range(50):
                async with session.post(url, json=body) as resp:
                    if resp.status == 202:
                        accepted += 1
                        break
                    assert resp.status in (429, 503), (resp.status, await resp.text())
                await asyncio.sleep(0.2)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return accepted


def _applied(log_path) -> int:
    """The worker's last `ledger_progress` total (its log is JSON lines)."""
    total = 0
    for line in log_path.read_text(errors="replace").splitlines():
        if '"ledger_progress"' in line:
            total = json.loads(line[line.index("{") :])["total"]
    return total


async def _wait_for(db, tenant_id: str, count: int, timeout_s: float) -> int:
    deadline, n = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        n = await db.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND type = 'bonus_awarded'",
            uuid.UUID(tenant_id),
        )
        if n >= count:
            return n
        await asyncio.sleep(0.5)
    return n


async def _check_exact(db, tenant_id: str, orders: range) -> tuple[int, int, int]:
    """(lost, doubled, drift) against what the accepted purchases must have made."""
    tid = uuid.UUID(tenant_id)
    rows = await db.fetch(
        "SELECT order_id, count(*) AS n FROM ledger_entries WHERE tenant_id = $1"
        " AND type = 'bonus_awarded' GROUP BY order_id",
        tid,
    )
    awarded = {r["order_id"]: r["n"] for r in rows}
    lost = sum(1 for i in orders if f"SO-{i}" not in awarded)
    doubled = sum(n - 1 for n in awarded.values() if n > 1)
    balances = {
        r["email"]: r["balance"]
        for r in await db.fetch(
            "SELECT c.email, b.balance FROM balances b JOIN customers c ON c.id = b.customer_id"
            " WHERE b.tenant_id = $1",
            tid,
        )
    }
    expected = _expected_balances(orders)
    drift = sum(abs(balances.get(k, 0) - v) for k, v in expected.items())
    return lost, doubled, drift


@pytest.mark.timeout(480)  # two phases, each allowed 300 s to settle; ~190 s on this machine
async def test_two_workers_share_one_shop_and_survive_a_kill(stack, make_tenant, base_url, db):
    tenant = await make_tenant("Marketplace", base_percent=PERCENT)
    await db.execute(
        "UPDATE tenants SET rate_limit_per_minute = 100000000, rate_limit_burst = 1000000"
        " WHERE id = $1",
        uuid.UUID(tenant["tenant_id"]),
    )
    await asyncio.sleep(stack.settings().tenant_cache_ttl_s + 0.1)
    url = f"{base_url}/api/webhook/{tenant['webhook_secret']}"
    second = stack.start_worker(name="worker-2")
    first_log = stack.process("worker").log_path
    before = _applied(first_log), _applied(second.log_path)

    singles = [{"action": "purchase", "payload": _purchase(i)} for i in range(SINGLES)]
    batches = [
        {
            "action": "batch_purchase",
            "payload": {"purchases": [_purchase(i) for i in range(b, b + BATCH)]},
        }
        for b in range(SINGLES, SINGLES + BATCHES * BATCH, BATCH)
    ]
    total = SINGLES + BATCHES * BATCH
    started = time.monotonic()
    accepted = await _post_all(url, singles) + await _post_all(url, batches, concurrency=2)
    done = await _wait_for(db, tenant["tenant_id"], total, timeout_s=300)
    elapsed = time.monotonic() - started
    await asyncio.sleep(6)  # one more progress line from each worker
    shares = [_applied(first_log) - before[0], _applied(second.log_path) - before[1]]
    print(
        f"\ntwo workers, one shop: {total} purchases ({accepted} webhooks accepted) in"
        f" {elapsed:.1f}s; applied per worker {shares}"
        f" ({', '.join(f'{100 * s / max(1, sum(shares)):.0f}%' for s in shares)})"
    )
    assert done >= total
    assert all(s >= 0.3 * total for s in shares), shares

    late = [
        {"action": "purchase", "payload": _purchase(i)} for i in range(total, total + LATE_SINGLES)
    ]
    sending = asyncio.create_task(_post_all(url, late))
    await asyncio.sleep(3)
    stack.stop_process("worker-2", kill=True)  # kill -9 mid-load
    accepted_late = await sending
    everything = range(total + LATE_SINGLES)
    killed = time.monotonic()
    settled = await _wait_for(db, tenant["tenant_id"], len(everything), timeout_s=300)
    settle_s = time.monotonic() - killed
    await asyncio.sleep(3)  # anything extra would show up by now
    lost, doubled, drift = await _check_exact(db, tenant["tenant_id"], everything)
    print(
        f"kill -9 of one of two workers mid-load: accepted {SINGLES + BATCHES + accepted_late}"
        f" webhooks ({len(everything)} purchases), lost {lost}, doubled {doubled}, drift {drift};"
        f" {settled} awarded {settle_s:.1f}s after the kill"
    )
    if (lost, doubled, drift) != (0, 0, 0):  # where it stopped, for whoever reads the CI log
        settings = stack.settings()
        lag = await group_lag(settings.bootstrap_list, settings.worker_id)
        print(f"uncommitted records per topic: {lag}")
        print(log_summary(first_log))
        print(log_summary(second.log_path))
    assert (lost, doubled, drift) == (0, 0, 0)
