"""Stream workers die under a mixed load: one worker killed -9 ten times; two workers, one of
them killed -9 in the middle of the rebalance that the other's arrival started.

Final balances must equal the pure rules core fed the same stored inputs (harness, checker).
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from harness import assert_clean, run_scenario

pytestmark = [pytest.mark.disruptive]

KILLS = 10
REBALANCE_MARKERS = (b"Revoking previously assigned partitions", b"(Re-)joining group")


@pytest.mark.timeout(600)
async def test_worker_killed_ten_times_under_mixed_load(fault_stack):
    rng = random.Random(10)

    async def fault(fs, t):
        await asyncio.sleep(3.0)
        t.start = time.monotonic()
        for i in range(KILLS):
            await fs.stop("worker", kill=True)
            t.note(f"worker killed -9 ({i + 1}/{KILLS})")
            await fs.start("worker")
            t.note("worker ready")
            if i < KILLS - 1:
                await asyncio.sleep(rng.uniform(1.0, 3.0))  # let it get into the backlog
        t.end = time.monotonic()

    assert_clean(await run_scenario(fault_stack, "worker kill -9 x10", fault, rate=8))


@pytest.mark.timeout(600)
async def test_two_workers_one_killed_mid_rebalance(fault_stack):
    async def fault(fs, t):
        [first] = fs.processes("worker")
        await asyncio.sleep(3.0)
        seen = len(fs.log_of(first))
        t.start = time.monotonic()
        await fs.start_extra_worker("worker-2", wait_ready=False)
        t.note("worker-2 started: it joins the group, a rebalance begins")
        deadline = time.monotonic() + 60
        while not any(m in fs.log_of(first)[seen:] for m in REBALANCE_MARKERS):
            assert time.monotonic() < deadline, "worker 1 never saw the rebalance begin"
            await asyncio.sleep(0.05)
        await fs.stop("worker", kill=True)
        t.note("worker 1 killed -9 mid-rebalance")
        await asyncio.sleep(3.0)
        await fs.start("worker")  # restarted, as a supervisor would: two workers again
        t.end = time.monotonic()
        t.note("worker 1 restarted and ready")

    try:
        report = await run_scenario(fault_stack, "2 workers, kill -9 mid-rebalance", fault)
    finally:
        for proc in fault_stack.processes("worker-2"):
            await fault_stack.stop(proc.name)
    assert_clean(report)
