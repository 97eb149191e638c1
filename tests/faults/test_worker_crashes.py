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
    reason="open (issue 10): ten kill -9s under the mixed load with webhooks.raw spread over 32 "
    "partitions. Fixed this far: stalled partitions (streams/consumer.py, streams/deferral.py), "
    "commits ahead of the changelog (streams/changelog_barrier.py), and records Faust skipped "
    "around a rebalance yet acknowledged (StreamConsumer.ack): before that fix 109 of 871 "
    "actions were lost with no command ever sent; after it 18 of 1,584, every one with its "
    "command sent: spends rejected and level changes missing, i.e. a customer's commands "
    "applied out of order or on rolled-back state after a restart",
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
    reason="a kill -9 can roll back a customer's ledger state for a command whose "
    "loyalty.commands offset was already committed: the next owner skips it, and the command "
    "only comes back when the normaliser replays its raw record, after the customer's later "
    "commands (seen: a spend applied before the purchase it relies on, spend_rejected with "
    "seq 1 and the award with seq 2; purchases awarded at the wrong level % and a referral "
    "award missing, the referrer's balance short). The table writes (streams/ledger.py:33-35) "
    "and the events (:61-63) go out through Faust's producer buffer while offsets are "
    "committed every 1 s (streams/app.py:67-69): nothing ties a commit to their delivery; "
    "issue 10 point 5",
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
