"""`kopilka replay raw` on the real stack: what failed before is processed now, nothing twice."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
from payloads import WAIT, action, purchase
from prometheus_client.parser import text_string_to_metric_families

from kopilka.core.settings import PROJECT_ROOT
from kopilka.devstack import devservices


def _ctrl_c_works() -> None:
    """The child's SIGINT as a terminal's Ctrl-C gives it, however this session was started: a
    shell starts background jobs with SIGINT ignored, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _start(stack, *args: str, env: dict | None = None):
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kopilka",
        "replay",
        "raw",
        *args,
        env={**stack.child_env(), **(env or {})},
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_ctrl_c_works,
    )


async def _replay(stack, *args: str, env: dict | None = None, with_log: bool = False):
    proc = await _start(stack, *args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert "replay raw:" in err.decode()  # the closing summary (no terminal: plain lines)
    counts = json.loads(out.decode().strip().splitlines()[-1])
    return (counts, err.decode()) if with_log else counts


async def _entries(db, tenant_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT type FROM ledger_entries WHERE tenant_id = $1 ORDER BY type",
        uuid.UUID(tenant_id),
    )
    return [r["type"] for r in rows]


async def _settled(db, tenant_id: str, expected: list[str], timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await _entries(db, tenant_id) == expected:
            return True
        await asyncio.sleep(0.3)
    return False


async def test_replaying_a_shops_raw_webhooks_applies_what_failed_and_nothing_twice(
    api, make_tenant, stack, db
):
    shop, other = await make_tenant(), await make_tenant()
    secret, email = shop["webhook_secret"], f"rr-{uuid.uuid4().hex[:8]}@example.com"
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    # the shop's refund arrives before its purchase: refused, the order is not known yet
    _, body, _ = await api.post_webhook(secret, json=action("refund", orderId="RR-1"), headers=WAIT)
    assert body["outcomes"][0]["status"] == "rejected", body
    status, body, _ = await api.post_webhook(secret, json=purchase("RR-1", 1000, email=email))
    assert status == 202, body
    status, body, _ = await api.post_webhook(
        other["webhook_secret"], json=purchase("RR-1", 1000, email=email)
    )
    assert status == 202, body
    assert await _settled(db, shop["tenant_id"], ["bonus_awarded"])
    assert await _settled(db, other["tenant_id"], ["bonus_awarded"])

    dry = await _replay(stack, "--from", since, "--tenant", shop["tenant_id"], "--dry-run")
    assert dry["matched"] == 2 and dry["refed"] == 0
    counts = await _replay(stack, "--from", since, "--tenant", shop["tenant_id"])
    assert counts["matched"] == 2 and counts["refed"] == 2  # not the other shop's webhook

    # the purchase is a duplicate; the refund applies now
    assert await _settled(db, shop["tenant_id"], ["bonus_awarded", "bonus_reversed"])

    await _replay(stack, "--from", since, "--tenant", shop["tenant_id"])  # once more
    await asyncio.sleep(3)
    assert await _entries(db, shop["tenant_id"]) == ["bonus_awarded", "bonus_reversed"]
    assert await _entries(db, other["tenant_id"]) == ["bonus_awarded"]


async def _awards(db, tenant_id: str) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND type = 'bonus_awarded'",
        uuid.UUID(tenant_id),
    )


async def _until(check, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_an_interrupted_replay_goes_on_where_it_stopped_and_never_reads_its_own_output(
    api, make_tenant, stack, db, tmp_path
):
    """Ctrl-C, then the same command (a relative --from) again: it resumes with the first run's
    end offsets, not reading what it fed itself nor what arrived since; a dry run meanwhile
    neither reads nor changes its progress."""
    shop, email = await make_tenant(), f"ir-{uuid.uuid4().hex[:8]}@example.com"
    env = {"KOPILKA_REPLAY_STATE_DIR": str(tmp_path)}
    sent = await asyncio.gather(
        *(
            api.post_webhook(shop["webhook_secret"], json=purchase(f"IR-{i}", 100, email=email))
            for i in range(40)
        )
    )
    assert all(status == 202 for status, _, _ in sent), sent
    assert await _until(lambda: _awards_are(db, shop, 40))
    args = ("--from", "10m", "--tenant", shop["tenant_id"])

    dry = await _replay(stack, *args, "--dry-run", env=env)
    assert dry["matched"] == 40 and dry["refed"] == 0
    assert list(tmp_path.iterdir()) == []  # a dry run keeps no state

    port = devservices.free_port()  # its progress as Prometheus gauges, while it runs
    metrics_env = {**env, "KOPILKA_REPLAY_METRICS_PORT": str(port)}
    proc = await _start(stack, *args, "--max-rate", "8", env=metrics_env)  # ~5 s for 40 records
    state_file, first = None, None

    async def progressed() -> bool:  # the state file exists, and says some records are done
        nonlocal state_file, first
        files = list(tmp_path.glob("raw-*.json"))
        if not files:
            return False
        state_file, plan = files[0], json.loads(files[0].read_text())
        first = first or plan
        return sum(plan["position"].values()) > sum(first["position"].values())

    assert await _until(progressed, 30)
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        scraped = {
            sample.name: sample.value
            for family in text_string_to_metric_families(await r.text())
            for sample in family.samples
            if sample.labels.get("replay") == "raw"
        }
    assert scraped["kopilka_replay_records_expected"] > 0, scraped
    assert 0 < scraped["kopilka_replay_records_done"] <= scraped["kopilka_replay_records_expected"]
    await asyncio.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130, err.decode()
    assert "Traceback" not in err.decode(), err.decode()
    assert "run the same command again" in err.decode()
    plan = json.loads(state_file.read_text())
    left = sum(plan["end"][p] - plan["position"][p] for p in plan["end"])
    assert 0 < left

    # more of the shop's webhooks arrive, and a dry run is made: neither changes the resume
    for i in range(5):
        status, body, _ = await api.post_webhook(
            shop["webhook_secret"], json=purchase(f"IR-new-{i}", 50, email=email)
        )
        assert status == 202, body
    assert await _until(lambda: _awards_are(db, shop, 45))
    before = state_file.read_bytes()
    await _replay(stack, *args, "--dry-run", env=env)
    assert state_file.read_bytes() == before

    counts, log = await _replay(stack, *args, env=env, with_log=True)
    assert "going on with the run started at" in log
    assert counts["scanned"] == left  # the first run's end offsets: not its own output, not new
    assert 0 < counts["matched"] < 40 and counts["refed"] == counts["matched"]
    assert not state_file.exists()  # done: the next run starts afresh
    await asyncio.sleep(3)
    assert await _awards(db, shop["tenant_id"]) == 45  # nothing awarded twice


async def _awards_are(db, shop: dict, n: int) -> bool:
    return await _awards(db, shop["tenant_id"]) == n
