"""The webhook-id replay guard's states (in-process backend; Redis in tests/e2e)."""

from __future__ import annotations

from ingest.replay import PENDING, LocalReplayGuard


async def test_claim_pending_confirm_release():
    guard = LocalReplayGuard(window_s=60)
    assert await guard.claim("t", "msg_1", "e1") is None
    assert await guard.claim("t", "msg_1", "e2") == PENDING + "e1"  # first still being stored
    await guard.confirm("t", "msg_1", "e1")
    assert await guard.claim("t", "msg_1", "e3") == "e1"  # a duplicate of the stored one
    assert await guard.claim("other-tenant", "msg_1", "e4") is None  # ids are per tenant
    await guard.release("t", "msg_1")
    assert await guard.claim("t", "msg_1", "e5") is None  # released: the retry goes in
