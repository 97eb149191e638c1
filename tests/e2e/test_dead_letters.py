"""Dead letters on the real stack: stored by the worker, listed and shown by the CLI and the admin
API, redriven byte for byte, with their effect applied once however often they are redriven.

The letters are made here as a stage would make them (schemas.dead_letters.DeadLetter, sent to
kopilka.dead-letters): a shop's accepted purchase that `normalize` gave up on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import sys
import time
import uuid
from asyncio.subprocess import PIPE
from datetime import UTC, datetime

import pytest
from payloads import purchase

from kopilka.cli.dead_letters import run_command, table
from kopilka.cli.main import parser
from kopilka.core import topics
from kopilka.core.ids import new_event_id
from kopilka.core.kafka import make_producer
from kopilka.core.settings import PROJECT_ROOT
from schemas.dead_letters import DeadLetter
from schemas.messages import RawEnvelope


async def kopilka(stack, *argv: str) -> tuple[int, str, str]:
    """Run the real command line in its own process: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kopilka",
        *argv,
        env=stack.child_env(),
        cwd=PROJECT_ROOT,
        stdout=PIPE,
        stderr=PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


async def dead_letters(stack, *argv: str) -> tuple[int, dict]:
    """`kopilka dead-letters ...` in this process (a process per command is slow on a busy
    machine): (exit status, what it prints as JSON)."""
    return await run_command(stack.settings(), parser().parse_args(["dead-letters", *argv]))


@pytest.fixture
async def producer(stack):
    p = make_producer(stack.settings())
    await p.start()
    yield p
    await p.stop()


def dead_purchase(tenant: dict, order: str, email: str, **extra) -> DeadLetter:
    """An accepted purchase as `normalize` would dead-letter it (the original raw record)."""
    env = RawEnvelope(
        event_id=new_event_id(),
        tenant_id=tenant["tenant_id"],
        received_at=datetime.now(UTC),
        content_type="application/json",
        body=json.dumps(purchase(order, 1000, email=email)),
    )
    fields = {
        "stage": "normalize",
        "source_topic": topics.WEBHOOKS_RAW.name,
        "partition": 0,
        "offset": random.randrange(10**12),  # a source no real record had
        "key": tenant["tenant_id"].encode(),
        "value": env.to_bytes(),
        "code": "internal_error",
        "reason": "the database refused a connection (test)",
        "error": "TooManyConnectionsError: sorry, too many clients already",
        "attempts": 5,
        "tenant_id": tenant["tenant_id"],
        "request_id": env.event_id,
    }
    return DeadLetter.of(**{**fields, **extra})


async def send(producer, *letters: DeadLetter) -> None:
    for dl in letters:
        await producer.send_and_wait(
            topics.DEAD_LETTERS.name, dl.to_bytes(), key=(dl.tenant_id or "").encode()
        )


async def stored(db, *ids: str, timeout_s: float = 30) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await db.fetch(
            "SELECT * FROM dead_letters WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids]
        )
        if len(rows) == len(ids):
            return rows
        assert time.monotonic() < deadline, f"dead letters {ids} not stored in {timeout_s}s"
        await asyncio.sleep(0.2)


async def awards(db, tenant: dict, order: str) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND order_id = $2"
        " AND type = 'bonus_awarded'",
        uuid.UUID(tenant["tenant_id"]),
        order,
    )


async def test_a_dead_letter_is_listed_shown_and_redriven_once(api, tenant, db, stack, producer):
    dl = dead_purchase(tenant, "DL-1", "dl1@example.com")
    await send(producer, dl)
    [row] = await stored(db, dl.dead_letter_id)
    assert bytes(row["value"]) == dl.value and bytes(row["key"]) == dl.key
    assert (row["stage"], row["code"], row["attempts"], row["redrive_count"]) == (
        "normalize",
        "internal_error",
        5,
        0,
    )
    await send(producer, dl)  # the stage dead-lettered it again (a retry after a crash): one row
    await asyncio.sleep(1)
    assert await db.fetchval("SELECT count(*) FROM dead_letters WHERE id = $1", row["id"]) == 1

    # the command line
    status, listing = await dead_letters(stack, "list", "--tenant", tenant["tenant_id"])
    assert status == 0 and [v["id"] for v in listing["dead_letters"]] == [dl.dead_letter_id]
    assert listing["dead_letters"][0]["source"] == {
        "topic": "webhooks.raw",
        "partition": 0,
        "offset": dl.offset,
    }
    assert dl.dead_letter_id in table(listing["dead_letters"])
    status, shown = await dead_letters(stack, "show", dl.dead_letter_id)
    assert status == 0 and base64.b64decode(shown["value_b64"]) == dl.value
    status, shown = await dead_letters(stack, "show", str(uuid.uuid4()))
    assert (status, shown["error"]) == (1, "dead_letter_not_found")

    # the admin API
    status, body = await api.admin("GET", f"dead-letters?tenant_id={tenant['tenant_id']}")
    assert status == 200 and [v["id"] for v in body["dead_letters"]] == [dl.dead_letter_id]
    status, body = await api.admin("GET", f"dead-letters/{dl.dead_letter_id}")
    assert status == 200 and json.loads(body["value_text"])["tenant_id"] == tenant["tenant_id"]
    assert body["request_id"] == dl.request_id and body["redriven_at"] is None
    status, body = await api.admin("GET", f"dead-letters/{uuid.uuid4()}")
    assert (status, body["error"]) == (404, "dead_letter_not_found")
    status, body = await api.admin("GET", "dead-letters?limit=0")
    assert (status, body["field"]) == (422, "limit")
    async with api.session.get(f"{api.base}/api/admin/dead-letters") as resp:
        assert resp.status == 401  # no admin token

    # nothing was applied yet; a redrive applies it
    status, _ = await api.customer(tenant["api_key"], email="dl1@example.com")
    assert status == 404
    status, out, _ = await kopilka(stack, "dead-letters", "redrive", dl.dead_letter_id)
    assert status == 0 and json.loads(out)["redriven"] == [dl.dead_letter_id]
    await api.wait_for_customer(
        tenant["api_key"], lambda b: b["balance"]["total"] == 50, email="dl1@example.com"
    )

    # a second redrive is skipped; a forced one (the API) is sent and changes nothing
    status, report = await dead_letters(stack, "redrive", dl.dead_letter_id)
    assert status == 0 and report["redriven"] == [] and len(report["skipped"]) == 1
    status, body = await api.admin("POST", f"dead-letters/{dl.dead_letter_id}/redrive")
    assert (status, body["status"]) == (200, "skipped")
    status, body = await api.admin(
        "POST", f"dead-letters/{dl.dead_letter_id}/redrive", {"force": True}
    )
    assert (status, body["status"], body["dead_letter"]["redrive_count"]) == (200, "redriven", 2)
    status, body = await api.admin(
        "POST", f"dead-letters/{dl.dead_letter_id}/redrive", {"force": "yes"}
    )
    assert (status, body["field"]) == (422, "force")
    await asyncio.sleep(3)  # the forced copy has been through the pipeline by now
    customer = await api.wait_for_customer(tenant["api_key"], email="dl1@example.com")
    assert customer["balance"]["total"] == 50
    assert await awards(db, tenant, "DL-1") == 1


async def test_a_tenants_letters_are_redriven_together_after_a_dry_run(
    api, make_tenant, db, stack, producer
):
    tenant, other = await make_tenant(), await make_tenant()
    mine = [dead_purchase(tenant, f"DB-{i}", f"db{i}@example.com") for i in range(3)]
    theirs = dead_purchase(other, "DB-X", "dbx@example.com")
    await send(producer, *mine, theirs)
    await stored(db, *(dl.dead_letter_id for dl in [*mine, theirs]))

    # paging through the tenant's letters, two at a time
    status, first = await api.admin("GET", f"dead-letters?tenant_id={tenant['tenant_id']}&limit=2")
    assert status == 200 and len(first["dead_letters"]) == 2 and first["next"]
    status, second = await api.admin(
        "GET", f"dead-letters?tenant_id={tenant['tenant_id']}&limit=2&before={first['next']}"
    )
    assert status == 200 and second["next"] is None
    paged = {v["id"] for v in first["dead_letters"] + second["dead_letters"]}
    assert paged == {dl.dead_letter_id for dl in mine}

    args = ("redrive", "--tenant", tenant["tenant_id"])
    status, report = await dead_letters(stack, *args, "--dry-run")
    assert status == 0
    assert set(report["would_redrive"]) == {dl.dead_letter_id for dl in mine}
    status, _ = await api.customer(tenant["api_key"], email="db0@example.com")
    assert status == 404  # a dry run sends nothing

    status, report = await dead_letters(stack, *args)
    assert status == 0 and len(report["redriven"]) == 3
    status, report = await dead_letters(stack, *args)  # nothing left to redrive
    assert status == 0 and report["redriven"] == []
    for i in range(3):
        await api.wait_for_customer(
            tenant["api_key"], lambda b: b["balance"]["total"] == 50, email=f"db{i}@example.com"
        )
    status, _ = await api.customer(other["api_key"], email="dbx@example.com")
    assert status == 404  # another tenant's letters stay where they are
    [row] = await stored(db, theirs.dead_letter_id)
    assert row["redrive_count"] == 0


async def test_poison_in_a_dead_letter_does_not_stop_the_store(api, tenant, db, producer):
    await producer.send_and_wait(topics.DEAD_LETTERS.name, b"\xffnot a dead letter", key=b"")
    dl = dead_purchase(
        tenant,
        "DP-1",
        "dp@example.com",
        value=b"\xff\xfe\x00 not UTF-8",
        reason="refundId 'R\x00 1' refused",
        error="CharacterNotInRepertoireError: invalid byte sequence \x00",
    )
    await send(producer, dl)
    [row] = await stored(db, dl.dead_letter_id)
    assert bytes(row["value"]) == b"\xff\xfe\x00 not UTF-8"
    status, body = await api.admin("GET", f"dead-letters/{dl.dead_letter_id}")
    assert status == 200 and body["value_text"] is None
    assert base64.b64decode(body["value_b64"]) == dl.value
    assert body["reason"] == "refundId 'R\\x00 1' refused"
