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


@pytest.mark.xfail(
    strict=False,
    reason="open (issue 10): ten kill -9s under the mixed load. Fixed this session, each found "
    "with the checker's raw partition@offset: records Faust skipped around a rebalance yet "
    "acknowledged; never-committed partitions committed from the first record handed over, "
    "not the start of their log; records processed before the seek to the committed offset; "
    "refunds overtaking the same customer's spend (streams/consumer.py, schemas/routing.py). "
    "Runs went from 92-109 lost of ~1,000 (most with no command ever sent) to 8-16 of ~820, "
    "none without its command: a spend rejected or a level change missing because the "
    "customer's state or a referral award came late after a restart; once the Postgres sink "
    "refused a lot's move (remaining < 0), i.e. the engine emitted two histories of one lot",
)
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


@pytest.mark.xfail(
    strict=False,
    reason="open (issue 10): 386 accepted, 4 lost, 0 doubled, 8 drift after this session's "
    "consumer fixes (288 | 3 | 0 | 14 before): a referrer's spend rejected because the referral "
    "award (a follow-up command from the referee's partition) reached the ledger after it, and "
    "the refunds that depended on that spend; the pure core applies a referral award at once",
)
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
