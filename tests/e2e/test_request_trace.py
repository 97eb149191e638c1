"""One grep finds a webhook's whole story: every stage logs its request id (kopilka.core.logging).

The session stack runs at DEBUG, where each stage writes one line per webhook it handles; the
line with `stage` and `request_id` (the event_id the 202 returned) is looked for in every
Kopilka process's log: ingress, normalize and ledger in the worker, the Postgres sink, and the
dispatcher's delivery to the shop's endpoint.
"""

from __future__ import annotations

import asyncio
import json
import time

from payloads import purchase
from test_outbound_webhooks import admin, endpoint, receiver  # noqa: F401 - fixtures

STAGES = {"ingress", "normalize", "ledger", "sink", "outbound"}


def _story(logs_dir, request_id: str) -> dict[str, list[dict]]:
    story: dict[str, list[dict]] = {}
    needle = request_id.encode()
    for path in sorted(logs_dir.glob("*.log")):
        for line in path.read_bytes().splitlines():
            if needle in line:
                record = json.loads(line)
                story.setdefault(record.get("stage"), []).append(record)
    return story


async def test_one_grep_finds_a_webhooks_whole_story(api, tenant, endpoint, receiver, stack):  # noqa: F811
    ep = await endpoint(tenant)
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], json=purchase("TRACE-1", 1000, email="trace@example.com")
    )
    assert status == 202, body
    request_id = body["event_id"]
    [delivered] = await receiver.wait_for(ep["path"], 1)

    deadline = time.monotonic() + 30
    while not STAGES <= (story := _story(stack.data_dir / "logs", request_id)).keys():
        assert time.monotonic() < deadline, (sorted(k for k in story if k), request_id)
        await asyncio.sleep(0.3)

    assert story["ingress"][0]["event"] == "webhook_accepted"
    [normalized] = story["normalize"]
    [command_id] = normalized["commands"]
    assert any(r["command_id"] == command_id for r in story["ledger"])
    assert {r["event_id"] for r in story["sink"]} >= {delivered.headers["webhook-id"]}
    assert story["outbound"][0]["event_id"] == delivered.headers["webhook-id"]
    assert all(r["request_id"] == request_id for stage in STAGES for r in story[stage])
