"""The fault-suite harness: one scenario = a fresh shop, a steady mixed load, a fault, a check.

`run_scenario()` makes a new tenant (levels and referral awards on, so every rule is at work),
sets up a few referrers before the load, then runs the shop's load (`load.Shop`) while the
scenario's fault coroutine does its damage to the stack, keeps sending a few seconds after the
fault ended, lets every started action finish (retried until 202 or given up), and hands over
to the checker (`checker.Checker`). It prints one line of the fault table:

    scenario | accepted | lost | doubled | drift | recover_s

and `assert_clean()` demands lost == doubled == drift == 0, a recovery, and that the shop's
retries all got in (no 4xx for a valid body, no request given up). recover_s runs from the end
of the fault (the service back, the last worker restart ready) until Postgres holds everything
the core expects; it includes the few seconds of load sent after the fault.

Environment: KOPILKA_FAULT_FAST=1 shortens the Postgres outage to 20 s (the issue's 60 s by
default); KOPILKA_FAULT_SETTLE_S (240) is how long the checker waits for the pipeline to settle.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pprint import pformat

import asyncpg
from checker import Checker, Report
from load import Scripts, Shop

from schemas.tenant_rules import TenantRules

TABLE: list[str] = []  # the fault table of this run, printed at the end (conftest)

RULES = {
    "base_percent": "5",
    "levels": [{"name": "silver", "min_lifetime_spend": "5000", "bonus_percent": "2"}],
    "referral_percent": "3",
    "referral_mode": "every_purchase",
}
REFERRERS = 4


def fast() -> bool:
    """KOPILKA_FAULT_FAST=1: shorter outages, for a quick local run."""
    return os.environ.get("KOPILKA_FAULT_FAST", "") not in ("", "0")


@dataclass
class Timeline:
    """What the fault did, when (monotonic seconds); `end` is when the stack was whole again."""

    start: float | None = None
    end: float | None = None
    notes: list[str] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.notes.append(f"{time.monotonic() - self.t0:6.1f}s {what}")


Fault = Callable[["object", Timeline], Awaitable[None]]


async def run_scenario(
    fs,
    name: str,
    fault: Fault,
    *,
    rate: float = 15.0,
    lanes: int = 24,
    post_s: float = 4.0,
    give_up_after_s: float = 60.0,
    settle_timeout_s: float | None = None,
    prepare: Callable[[dict], Awaitable[None]] | None = None,
) -> Report:
    """`prepare(tenant)`, when given, runs once the shop exists and before it sends anything
    (e.g. to subscribe an endpoint to its events)."""
    if settle_timeout_s is None:
        settle_timeout_s = float(os.environ.get("KOPILKA_FAULT_SETTLE_S", "240"))
    healed = await fs.heal()
    if healed:
        print(f"{name}: the stack was not whole before the scenario: {healed}")
    run_id = f"{re.sub(r'[^a-z0-9]+', '-', name.lower())[:16]}-{uuid.uuid4().hex[:6]}"
    tenant = await fs.make_tenant(f"faults {name}", RULES)
    if prepare is not None:
        await prepare(tenant)
    rules = TenantRules.model_validate(RULES)
    referrers = [f"{run_id}-ref{i}@faults.example" for i in range(REFERRERS)]
    shop = Shop(
        fs.base_url,
        tenant["webhook_secret"],
        Scripts(run_id, zlib.crc32(name.encode()), referrers),
        rate=rate,
        lanes=lanes,
    )
    await _set_up_referrers(fs, shop, tenant, referrers)

    timeline = Timeline()
    stop = asyncio.Event()
    load = asyncio.create_task(shop.run(stop, give_up_after_s))
    try:
        await fault(fs, timeline)
        await asyncio.sleep(post_s)
    finally:
        stop.set()
        await load
    timeline.note(f"load done: {len(shop.actions)} actions")
    assert timeline.end is not None, "the fault must say when the stack was whole again"

    checker = Checker(
        dsn=fs.dsn, bootstrap=fs.bootstrap, base_url=fs.base_url, tenant=tenant, rules=rules
    )
    report = await checker.check(name, shop, timeline.end, settle_timeout_s)
    report.details["timeline"] = timeline.notes
    TABLE.append(report.line())
    print(report.line())
    print(pformat(report.details, width=100))
    return report


async def _set_up_referrers(fs, shop: Shop, tenant: dict, referrers: list[str]) -> None:
    """Referrers register and buy before the load; registrations naming them need them known."""
    for i, email in enumerate(referrers):
        register = json.dumps({"action": "register_user", "payload": {"email": email}})
        done = [await shop.send_one("register", register, email)]
        order = f"{email}-first"
        purchase = json.dumps(
            {
                "action": "purchase",
                "payload": {"email": email, "orderId": order, "amount": 1000 + i},
            }
        )
        done.append(await shop.send_one("purchase", purchase, email, order))
        assert all(a.accepted for a in done), [(a.body, a.attempts, a.refused) for a in done]
    conn = await asyncpg.connect(fs.dsn)
    try:
        deadline = time.monotonic() + 30
        while True:
            known = await conn.fetchval(
                "SELECT count(*) FROM customer_identities WHERE tenant_id = $1 AND kind = 'email'"
                " AND value = ANY($2::text[])",
                uuid.UUID(tenant["tenant_id"]),
                referrers,
            )
            if known == len(referrers):
                return
            assert time.monotonic() < deadline, f"only {known} referrers known after 30 s"
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def assert_clean(report: Report) -> None:
    details = pformat(report.details, width=100)
    assert (report.lost, report.doubled, report.drift) == (0, 0, 0), f"{report.line()}\n{details}"
    assert report.recover_s is not None, f"never settled: {report.line()}\n{details}"
    assert not report.details["refused_4xx"], details
    assert not report.details["gave_up"], f"the shop's retries did not all get in\n{details}"
