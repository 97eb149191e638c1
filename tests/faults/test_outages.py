"""A shop keeps sending while a service of the stack is down: Postgres, Redis, the broker.

Each scenario prints its line of the fault table (harness) and demands lost 0, doubled 0,
drift 0 against the pure rules core fed the inputs the broker stored.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from harness import assert_clean, fast, run_scenario

pytestmark = [pytest.mark.disruptive]

BEFORE_S = 4.0  # steady load before the fault


async def _service_down(fs, t, service: str, down_s: float) -> None:
    await asyncio.sleep(BEFORE_S)
    t.start = time.monotonic()
    await fs.stop(service)
    t.note(f"{service} stopped")
    await asyncio.sleep(max(0.0, down_s - (time.monotonic() - t.start)))
    await fs.start(service)
    t.end = time.monotonic()
    t.note(f"{service} up again")


@pytest.mark.timeout(600)
async def test_postgres_stopped_while_a_shop_sends_steadily(fault_stack):
    down_s = 20.0 if fast() else 60.0

    async def fault(fs, t):
        await _service_down(fs, t, "postgres", down_s)

    assert_clean(await run_scenario(fault_stack, f"postgres down {down_s:.0f}s", fault))


@pytest.mark.timeout(600)
async def test_redis_stopped_for_30_s(fault_stack):
    async def fault(fs, t):
        await _service_down(fs, t, "redis", 30.0)

    assert_clean(await run_scenario(fault_stack, "redis down 30s", fault))


@pytest.mark.timeout(600)
async def test_broker_killed_and_restarted_with_requests_in_flight(fault_stack):
    async def fault(fs, t):
        await asyncio.sleep(BEFORE_S)
        t.start = time.monotonic()
        await fs.stop("kafka", kill=True)
        t.note("kafka killed -9")
        await fs.start("kafka")
        t.end = time.monotonic()
        t.note("kafka up again")

    assert_clean(await run_scenario(fault_stack, "broker kill -9", fault))
