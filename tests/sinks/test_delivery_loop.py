"""The webhook dispatcher's loop waits out a database that cannot answer, whatever asyncpg
raises for it (kopilka.core.retry.DATABASE_DOWN), instead of ending the dispatcher."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from kopilka.core.settings import Settings
from sinks.webhook_delivery import WebhookDispatcher


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.InternalClientError("cannot switch to state 12"),  # seen in CI
        asyncpg.InterfaceError("pool is closing"),
        ConnectionRefusedError(),
        TimeoutError(),
    ],
    ids=type,
)
async def test_a_claim_the_database_cannot_answer_is_tried_again(monkeypatch, error):
    settings = Settings(_env_file=None, dispatch_poll_interval_s=0.01)
    dispatcher = WebhookDispatcher(pool=None, settings=settings)
    stopping = asyncio.Event()
    claims = []

    async def claim():
        claims.append(1)
        if len(claims) == 1:
            raise error
        stopping.set()
        return {}

    monkeypatch.setattr(dispatcher, "claim", claim)
    await asyncio.wait_for(dispatcher.run(stopping), 10)
    assert len(claims) == 2


async def test_a_bug_still_ends_the_loop(monkeypatch):
    dispatcher = WebhookDispatcher(pool=None, settings=Settings(_env_file=None))

    async def claim():
        raise KeyError("not the database")

    monkeypatch.setattr(dispatcher, "claim", claim)
    with pytest.raises(KeyError):
        await asyncio.wait_for(dispatcher.run(asyncio.Event()), 10)
