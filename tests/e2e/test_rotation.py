"""`kopilka tenants rotate-secret`: old and new credentials work during grace, then old 404s."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta

from issued import remember
from payloads import purchase

from kopilka.directory.tenants import digest


async def test_webhook_secret_and_api_key_rotate_with_grace(api, tenant, rotate, stack, db):
    new = await rotate(tenant, timedelta(hours=24))
    assert new["webhook_secret"] != tenant["webhook_secret"]
    assert new["api_key"] != tenant["api_key"]
    email = "rotation@example.com"
    for n, secret in enumerate((tenant["webhook_secret"], new["webhook_secret"])):
        status, body, _ = await api.post_webhook(
            secret, json=purchase(f"ROT-{n}", 1000, email=email)
        )
        assert status == 202, body
    for key in (tenant["api_key"], new["api_key"]):
        await api.wait_for_customer(key, lambda b: b["balance"]["total"] == 100, email=email)

    await rotate({"tenant_id": tenant["tenant_id"]}, timedelta(0), only=["webhook-secret"])
    await asyncio.sleep(stack.settings().tenant_cache_ttl_s + 0.2)
    status, body, _ = await api.post_webhook(
        new["webhook_secret"], json=purchase("ROT-9", 1000, email=email)
    )
    assert (status, body["error"]) == (404, "unknown_webhook")
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], json=purchase("ROT-9", 1000, email=email)
    )
    assert status == 404  # the first secret's grace was cut short too


async def test_old_credentials_stop_when_the_grace_period_ends(api, tenant, rotate, stack):
    new = await rotate(tenant, timedelta(seconds=3), only=["webhook-secret", "api-key"])
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], json=purchase("GRACE-1", 1000, email="grace@example.com")
    )
    assert status == 202, body
    await api.wait_for_customer(tenant["api_key"], email="grace@example.com")
    await asyncio.sleep(3 + stack.settings().tenant_cache_ttl_s + 0.2)
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], json=purchase("GRACE-2", 1000, email="grace@example.com")
    )
    assert (status, body["error"]) == (404, "unknown_webhook")
    status, body = await api.customer(tenant["api_key"], email="grace@example.com")
    assert status == 401
    status, body = await api.customer(new["api_key"], email="grace@example.com")
    assert status == 200, body


async def test_credentials_are_stored_only_as_digests(tenant, rotate, db):
    new = await rotate(tenant, timedelta(hours=1), only=["api-key"])
    rows = await db.fetch("SELECT digest FROM tenant_credentials")
    stored = {bytes(r["digest"]) for r in rows}
    for token in (tenant["webhook_secret"], tenant["api_key"], new["api_key"]):
        assert digest(token) in stored
        assert token.encode() not in stored
    dump = str(await db.fetch("SELECT * FROM tenants")) + str(rows)
    assert tenant["api_key"] not in dump and new["api_key"] not in dump


def test_cli_rotate_secret_prints_new_credentials_once(stack, tenant):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kopilka",
            "tenants",
            "rotate-secret",
            tenant["tenant_id"],
            "--grace",
            "1h",
        ],
        capture_output=True,
        text=True,
        env=stack.child_env(),
        check=True,
    )
    printed = json.loads(out.stdout)
    remember(printed)
    assert printed["webhook_secret"].startswith("whk_")
    assert printed["signing_secret"].startswith("whsec_")
    assert printed["old_credentials_valid_for_s"] == 3600


def test_cli_rotate_unknown_tenant_fails_clearly(stack):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kopilka",
            "tenants",
            "rotate-secret",
            "00000000-0000-0000-0000-000000000000",
        ],
        capture_output=True,
        text=True,
        env=stack.child_env(),
        check=False,
    )
    assert out.returncode != 0 and "no tenant" in out.stderr
