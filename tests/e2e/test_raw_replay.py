"""`kopilka replay raw` on the real stack: what failed before is processed now, nothing twice."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from payloads import WAIT, action, purchase

from kopilka.settings import PROJECT_ROOT


async def _replay(stack, *args: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kopilka",
        "replay",
        "raw",
        *args,
        env=stack.child_env(),
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert "replay raw:" in err.decode()  # the closing summary (no terminal: plain lines)
    return json.loads(out.decode().strip().splitlines()[-1])


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
