"""Loyalty benchmark: synchronous spends (`Prefer: wait`) and a 10,000-item batch.

    make bench                       # tests/perf/bench.py runs these phases on its own stack
    .venv/bin/python tests/perf/loyalty_bench.py [--spends 500] [--batch 10000]

Phases, on a freshly started stack: S customers each make one purchase (with `Prefer: wait`, so
the award is in before they spend), then S spends with `Prefer: wait=5` over one connection,
timed from request to the 200 carrying `bonus_spent`; then one `batch_purchase` of N items, timed
until every award and every balance is in Postgres. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter

import aiohttp
import asyncpg
from benchkit import UNLIMITED, start_stack
from loadgen import percentile

from kopilka.cli.main import create_tenant_json, edge_json
from kopilka.core.settings import Settings

WAIT = {"Prefer": "wait=5", "Content-Type": "application/json"}


async def post(session, url: str, body: dict, headers=WAIT) -> tuple[int, dict, float]:
    started = time.perf_counter()
    async with session.post(url, data=json.dumps(body), headers=headers) as resp:
        data = await resp.json(content_type=None)
        return resp.status, data, time.perf_counter() - started


async def spends(url: str, count: int, figures: dict) -> None:
    statuses: Counter[str] = Counter()
    purchase_ms, spend_ms = [], []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for i in range(count):
            body = {
                "action": "purchase",
                "payload": {"email": f"s{i}@bench.example.com", "amount": 4000, "orderId": f"P{i}"},
            }
            status, _, took = await post(session, url, body)
            statuses[f"purchase_{status}"] += 1
            purchase_ms.append(took * 1000)
        for i in range(count):
            body = {
                "action": "spend_bonuses",
                "payload": {
                    "email": f"s{i}@bench.example.com",
                    "points": 100,
                    "orderId": f"S{i}",
                    "orderAmount": 1000,
                },
            }
            status, data, took = await post(session, url, body)
            events = [e["type"] for o in data.get("outcomes", []) for e in o["events"]]
            statuses[f"spend_{status}_{'+'.join(events) or 'none'}"] += 1
            spend_ms.append(took * 1000)
    figures.update(
        wait_purchase_p50_ms=percentile(purchase_ms, 50),
        wait_purchase_p99_ms=percentile(purchase_ms, 99),
        wait_spend_requests=count,
        wait_spend_p50_ms=percentile(spend_ms, 50),
        wait_spend_p90_ms=percentile(spend_ms, 90),
        wait_spend_p99_ms=percentile(spend_ms, 99),
        wait_spend_max_ms=max(spend_ms),
        wait_outcomes=dict(statuses),
    )


async def batch(
    url: str, dsn: str, tenant_id: str, items: int, figures: dict, timeout_s: float = 300.0
) -> None:
    purchases = [
        {"email": f"b{i % 2000}@bench.example.com", "amount": 100 + i % 900, "orderId": f"B{i}"}
        for i in range(items)
    ]
    expected = sum((100 + i % 900) * 5 // 100 for i in range(items))
    body = {"action": "batch_purchase", "payload": {"purchases": purchases}}
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        status, answer, took = await post(
            session, url, body, headers={"Content-Type": "application/json"}
        )
    figures.update(batch_items=items, batch_status=status, batch_answer_ms=took * 1000)
    figures["batch_accepted"] = len(answer.get("accepted", []))
    conn = await asyncpg.connect(dsn)
    try:
        tid = uuid.UUID(tenant_id)
        while time.perf_counter() - started < timeout_s:
            awards, points = await conn.fetchrow(
                "SELECT count(*), COALESCE(sum(points), 0) FROM ledger_entries"
                " WHERE tenant_id = $1 AND type = 'bonus_awarded' AND order_id LIKE 'B%'",
                tid,
            )
            balance = await conn.fetchval(
                "SELECT COALESCE(sum(balance), 0) FROM balances b WHERE tenant_id = $1"
                " AND EXISTS (SELECT 1 FROM customers c WHERE c.id = b.customer_id"
                " AND c.email LIKE 'b%@bench.example.com')",
                tid,
            )
            if awards == items and balance == expected:
                break
            await asyncio.sleep(0.2)
        figures["batch_reflected_s"] = time.perf_counter() - started
        figures["batch_awarded"] = awards
        figures["batch_awards_ok"] = awards == items and points == expected and balance == expected
    finally:
        await conn.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--spends", type=int, default=500)
    p.add_argument("--batch", type=int, default=10_000)
    args = p.parse_args()
    figures: dict = {}
    stack = start_stack("bench-loyalty")
    try:
        settings = stack.settings()
        dsn = settings.database_url.get_secret_value()
        tenant = asyncio.run(create_tenant_json(Settings(DATABASE_URL=dsn), name="Bench loyalty"))
        asyncio.run(edge_json(dsn, tenant["tenant_id"], **UNLIMITED))
        url = f"http://{settings.http_host}:{settings.http_port}/api/webhook/"
        url += tenant["webhook_secret"]
        print(f"Prefer: wait: {args.spends} purchases, then {args.spends} spends ...", flush=True)
        asyncio.run(spends(url, args.spends, figures))
        print(f"batch_purchase of {args.batch} items ...", flush=True)
        asyncio.run(batch(url, dsn, tenant["tenant_id"], args.batch, figures))
    except KeyboardInterrupt:
        return 130
    finally:
        print("stopping the stack ...", file=sys.stderr, flush=True)
        stack.stop()
    print("\n--- loyalty summary ---")
    for name, value in figures.items():
        print(f"{name}: {f'{value:.3f}' if isinstance(value, float) else value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
