"""Fixtures for end-to-end tests: HTTP clients, fresh tenants, and waiting for the pipeline."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg
import pytest
from issued import remember

from kopilka.cli.main import edge_json, rotate_json


class Api:
    """A shop's and an operator's view of Kopilka, over real HTTP."""

    def __init__(self, session: aiohttp.ClientSession, base: str, admin_token: str) -> None:
        self.session, self.base, self.admin_token = session, base, admin_token

    async def post_webhook(self, secret: str, *, json=None, data=None, headers=None):
        """POST to the shop's webhook URL: (status, JSON body, response headers)."""
        async with self.session.post(
            f"{self.base}/api/webhook/{secret}", json=json, data=data, headers=headers
        ) as resp:
            return resp.status, await resp.json(content_type=None), resp.headers

    async def admin(self, method: str, path: str, json=None):
        async with self.session.request(
            method,
            f"{self.base}/api/admin/{path}",
            json=json,
            headers={"Authorization": f"Bearer {self.admin_token}"},
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def customer(self, api_key: str, **query):
        async with self.session.get(
            f"{self.base}/api/v1/customers",
            params=query,
            headers={"Authorization": f"Bearer {api_key}"},
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def wait_for_customer(
        self, api_key: str, predicate=lambda body: True, timeout_s: float = 30.0, **query
    ) -> dict:
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            status, body = await self.customer(api_key, **query)
            last = (status, body)
            if status == 200 and predicate(body):
                return body
            await asyncio.sleep(0.2)
        raise AssertionError(f"customer {query} never matched within {timeout_s}s; last: {last}")


@pytest.fixture(scope="session")
def base_url(stack) -> str:
    settings = stack.settings()
    return f"http://{settings.http_host}:{settings.http_port}"


@pytest.fixture
async def api(base_url, stack):
    async with aiohttp.ClientSession() as session:
        yield Api(session, base_url, stack.settings().admin_token.get_secret_value())


@pytest.fixture(scope="session")
def dsn(stack) -> str:
    return stack.settings().database_url.get_secret_value()


@pytest.fixture
async def db(dsn):
    conn = await asyncpg.connect(dsn)
    yield conn
    await conn.close()


@pytest.fixture
def make_tenant(api):
    """A new tenant, made through the admin API, with the given loyalty rules."""

    async def make(name: str = "Test shop", **rules) -> dict:
        status, body = await api.admin("POST", "tenants", {"name": name, "rules": rules})
        assert status == 201, body
        return remember(body)

    return make


@pytest.fixture
def set_edge(dsn, stack):
    """Change a shop's edge settings, then wait out the ingress's tenant cache."""

    async def change(tenant: dict, **changes) -> dict:
        result = await edge_json(dsn, tenant["tenant_id"], **changes)
        await asyncio.sleep(stack.settings().tenant_cache_ttl_s + 0.1)
        return result

    return change


@pytest.fixture
def rotate(dsn):
    async def run(tenant: dict, grace, only=None) -> dict:
        return remember(await rotate_json(dsn, tenant["tenant_id"], grace=grace, only=only))

    return run


@pytest.fixture
async def tenant(make_tenant) -> dict:
    return await make_tenant()
