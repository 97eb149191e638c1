"""Signed webhooks over real HTTP: modes, Standard Webhooks, X-Signature, replays, rotation."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

from payloads import purchase
from standardwebhooks import Webhook

from ingest.signatures import sign_x_signature

JSON = {"Content-Type": "application/json"}


def body_for(order: str) -> bytes:
    return json.dumps(purchase(order, 1000, email=f"{order.lower()}@example.com")).encode()


def standard_headers(secret: str, body: bytes, msg_id: str | None = None, at=None) -> dict:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    return {
        **JSON,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
    }


async def test_required_mode_accepts_signed_and_refuses_unsigned(api, tenant, set_edge):
    await set_edge(tenant, signature_mode="required")
    secret = tenant["webhook_secret"]
    body = body_for("SIG-REQ-1")

    status, answer, _ = await api.post_webhook(secret, data=body, headers=JSON)
    assert (status, answer["error"], answer["field"]) == (
        401,
        "missing_signature",
        "webhook-signature",
    )

    headers = standard_headers(tenant["signing_secret"], body)
    status, answer, _ = await api.post_webhook(secret, data=body, headers=headers)
    assert status == 202, answer

    status, answer, _ = await api.post_webhook(
        secret,
        data=body,
        headers={**JSON, "X-Signature": sign_x_signature(tenant["signing_secret"], body)},
    )
    assert status == 202, answer


async def test_bad_stale_and_foreign_signatures_get_401_with_a_reason(
    api, tenant, make_tenant, set_edge
):
    await set_edge(tenant, signature_mode="required")
    other = await make_tenant("Other shop")
    secret, body = tenant["webhook_secret"], body_for("SIG-BAD-1")
    cases = {
        "foreign": standard_headers(other["signing_secret"], body),
        "stale": standard_headers(
            tenant["signing_secret"], body, at=datetime.now(UTC) - timedelta(minutes=6)
        ),
        "future": standard_headers(
            tenant["signing_secret"], body, at=datetime.now(UTC) + timedelta(minutes=6)
        ),
        "tampered": standard_headers(tenant["signing_secret"], body + b" "),
    }
    codes = {}
    for name, headers in cases.items():
        status, answer, _ = await api.post_webhook(secret, data=body, headers=headers)
        assert status == 401, (name, answer)
        assert answer["reason"] and tenant["signing_secret"] not in answer["reason"]
        codes[name] = answer["error"]
    assert codes == {
        "foreign": "invalid_signature",
        "stale": "stale_signature",
        "future": "future_signature",
        "tampered": "invalid_signature",
    }


async def test_optional_mode_takes_unsigned_but_not_badly_signed(api, tenant, set_edge):
    await set_edge(tenant, signature_mode="optional")
    secret = tenant["webhook_secret"]
    status, _, _ = await api.post_webhook(secret, data=body_for("SIG-OPT-1"), headers=JSON)
    assert status == 202
    status, answer, _ = await api.post_webhook(
        secret, data=body_for("SIG-OPT-2"), headers={**JSON, "X-Signature": "ab" * 32}
    )
    assert (status, answer["error"]) == (401, "invalid_signature")


async def test_off_mode_ignores_signature_headers(api, tenant):
    status, _, _ = await api.post_webhook(
        tenant["webhook_secret"], data=body_for("SIG-OFF-1"), headers={**JSON, "X-Signature": "x"}
    )
    assert status == 202


async def test_a_replayed_webhook_id_is_accepted_once(api, tenant, set_edge, db):
    await set_edge(tenant, signature_mode="required")
    secret, body = tenant["webhook_secret"], body_for("SIG-REPLAY-1")
    headers = standard_headers(tenant["signing_secret"], body)
    first = await api.post_webhook(secret, data=body, headers=headers)
    assert first[0] == 202, first[1]
    for _ in range(3):
        status, answer, _ = await api.post_webhook(secret, data=body, headers=headers)
        assert (status, answer) == (200, {"status": "duplicate", "event_id": first[1]["event_id"]})
    # the same id signed afresh (a sender's retry) is still the same delivery
    again = standard_headers(tenant["signing_secret"], body, msg_id=headers["webhook-id"])
    status, answer, _ = await api.post_webhook(secret, data=body, headers=again)
    assert (status, answer["status"]) == (200, "duplicate")


async def test_signing_secret_rotation_keeps_the_old_one_during_grace(
    api, tenant, set_edge, rotate, stack
):
    await set_edge(tenant, signature_mode="required")
    new = await rotate(tenant, timedelta(hours=1), only=["signing-secret"])
    assert set(new) >= {"signing_secret"} and "webhook_secret" not in new
    await asyncio.sleep(stack.settings().tenant_cache_ttl_s + 0.1)
    secret = tenant["webhook_secret"]
    for n, signer in enumerate((tenant["signing_secret"], new["signing_secret"])):
        body = body_for(f"SIG-ROT-{n}")
        status, answer, _ = await api.post_webhook(
            secret, data=body, headers=standard_headers(signer, body)
        )
        assert status == 202, answer
    await rotate({"tenant_id": tenant["tenant_id"]}, timedelta(0), only=["signing-secret"])
    await asyncio.sleep(stack.settings().tenant_cache_ttl_s + 0.1)
    body = body_for("SIG-ROT-9")
    status, _, _ = await api.post_webhook(
        secret, data=body, headers=standard_headers(new["signing_secret"], body)
    )
    assert status == 401
