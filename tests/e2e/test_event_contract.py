"""The public contract of loyalty.events, read the way a shop's own consumer would: kcat."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from jsonschema import Draft202012Validator
from payloads import purchase

from schemas.events import BonusAwarded, schema_path


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by make (as root)")
async def test_bonus_awarded_is_readable_with_kcat_and_matches_its_json_schema(api, tenant, stack):
    email = "kcat-reader@example.com"
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], json=purchase("KCAT-1", "1234.50", email=email)
    )
    assert status == 202, body
    customer = await api.wait_for_customer(
        tenant["api_key"], lambda b: b["balance"]["total"] == 61, email=email
    )

    kcat = await asyncio.create_subprocess_exec(
        "kcat",
        "-C",
        "-b",
        stack.settings().kafka_bootstrap_servers,
        "-t",
        "loyalty.events",
        "-o",
        "beginning",
        "-e",
        "-J",
        "-q",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(kcat.communicate(), timeout=60)
    assert kcat.returncode == 0, stderr.decode()
    out = stdout.decode()
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    mine = [
        r
        for r in records
        if json.loads(r["payload"]).get("order_id") == "KCAT-1"
        and json.loads(r["payload"])["tenant_id"] == tenant["tenant_id"]
    ]
    assert mine, f"no bonus_awarded for KCAT-1 among {len(records)} records"
    record = mine[0]
    event = json.loads(record["payload"])

    assert record["key"] == f"{tenant['tenant_id']}:{customer['customer']['id']}"
    schema = json.loads(schema_path(BonusAwarded).read_text())
    Draft202012Validator(schema).validate(event)
    assert (event["type"], event["version"], event["points"]) == ("bonus_awarded", 1, 61)
    assert event["amount"] == "1234.50" and event["balance_after"] == 61
    assert event["customer"] == {"id": customer["customer"]["id"], "email": email, "phone": None}
    # at-least-once with stable ids: whatever kcat saw twice carries the same event_id
    assert len({json.loads(r["payload"])["event_id"] for r in mine}) == 1
