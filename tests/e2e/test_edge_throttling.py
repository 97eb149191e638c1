"""Guessing costs the guesser, not the shops: unknown webhook secrets and wrong admin tokens are
throttled per client IP (429 + Retry-After), over real HTTP, with the buckets in the stack's
Redis. An ingress of its own with small budgets; each test connects from its own loopback
address (127.0.0.x), so no other test shares its buckets."""

from __future__ import annotations

import aiohttp
import pytest
from payloads import purchase

from kopilka.devstack import devservices


@pytest.fixture
def guarded_ingress(stack):
    port = devservices.free_port()
    proc = stack.start_ingest(
        stack.data_dir / "logs" / "ingest-throttled.log",
        env={
            "KOPILKA_HTTP_PORT": str(port),
            "KOPILKA_UNKNOWN_SECRETS_PER_MINUTE": "3",
            "KOPILKA_ADMIN_FAILURES_PER_MINUTE": "2",
        },
    )
    yield f"http://127.0.0.1:{port}"
    proc.stop()
    stack.processes.remove(proc)


class From:
    """An HTTP client whose requests leave from one loopback address."""

    def __init__(self, address: str, base: str) -> None:
        connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
        self.session = aiohttp.ClientSession(connector=connector)
        self.base = base

    async def webhook(self, secret: str, body: dict):
        async with self.session.post(f"{self.base}/api/webhook/{secret}", json=body) as resp:
            return resp.status, await resp.json(content_type=None), resp.headers

    async def admin(self, token: str, tenant_id: str):
        async with self.session.get(
            f"{self.base}/api/admin/tenants/{tenant_id}",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            return resp.status, await resp.json(content_type=None), resp.headers

    async def close(self) -> None:
        await self.session.close()


async def test_unknown_secrets_are_throttled_per_ip_known_shops_are_not(guarded_ingress, tenant):
    guesser, neighbour = From("127.0.0.21", guarded_ingress), From("127.0.0.22", guarded_ingress)
    try:
        order = purchase("TH-0", 100, email="th@example.com")
        assert (await guesser.webhook(tenant["webhook_secret"], order))[0] == 202
        for i in range(3):
            status, body, _ = await guesser.webhook(f"whk_guess{i:028d}", order)
            assert (status, body["error"]) == (404, "unknown_webhook")
        status, body, headers = await guesser.webhook("whk_guess" + "9" * 28, order)
        assert (status, body["error"]) == (429, "too_many_failures"), body
        assert int(headers["Retry-After"]) > 0
        status, body, _ = await guesser.webhook("not-even-a-secret", order)
        assert status == 429, body
        # the shop this ingress already knows goes through from the same address
        order = purchase("TH-1", 100, email="th@example.com")
        assert (await guesser.webhook(tenant["webhook_secret"], order))[0] == 202
        # and another address has its own budget
        status, body, _ = await neighbour.webhook("whk_guess" + "8" * 28, order)
        assert (status, body["error"]) == (404, "unknown_webhook")
    finally:
        await guesser.close()
        await neighbour.close()


async def test_wrong_admin_tokens_are_throttled_per_ip(guarded_ingress, tenant, stack):
    token = stack.settings().admin_token.get_secret_value()
    guesser, operator = From("127.0.0.23", guarded_ingress), From("127.0.0.24", guarded_ingress)
    tenant_id = tenant["tenant_id"]
    try:
        assert (await guesser.admin(token, tenant_id))[0] == 200
        for _ in range(2):
            assert (await guesser.admin("guess", tenant_id))[0] == 401
        status, body, headers = await guesser.admin("guess", tenant_id)
        assert (status, body["error"]) == (429, "too_many_failures"), body
        assert int(headers["Retry-After"]) > 0
        assert (await guesser.admin(token, tenant_id))[0] == 429  # blocked, right token or not
        assert (await operator.admin(token, tenant_id))[0] == 200
    finally:
        await guesser.close()
        await operator.close()
