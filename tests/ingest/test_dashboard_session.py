"""Dashboard sessions: what the store keeps, when a session ends, the CSRF comparison, and the
Redis store falling back to this process's memory while Redis cannot be reached."""

from __future__ import annotations

import dataclasses
import socket
import time

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ingest.dashboard_session import (
    ABSOLUTE_S,
    LocalSessionStore,
    RedisSessionStore,
    _storage_key,
    new_session,
)


def test_new_sessions_are_random_and_carry_no_key():
    (a_id, a), (b_id, b) = new_session("t1", "ab" * 32), new_session("t1", "ab" * 32)
    assert a_id != b_id and a.csrf != b.csrf and len(a_id) >= 43 and len(a.csrf) >= 43
    assert a.tenant_id == "t1" and a.key_digest == "ab" * 32


def test_csrf_comparison():
    _, session = new_session("t1", "00")
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok("")
    assert not session.csrf_ok(None)
    assert not session.csrf_ok(session.csrf[:-1])
    assert not session.csrf_ok(session.csrf + "x")


async def test_local_store_keeps_sessions_under_their_digest_and_forgets_them():
    store = LocalSessionStore()
    sid, session = new_session("t1", "00")
    await store.save(sid, session)
    assert await store.load(sid) == session
    assert list(store._sessions._data) == [_storage_key(sid)]
    assert await store.load(sid + "x") is None
    await store.delete(sid)
    assert await store.load(sid) is None


async def test_a_session_ends_after_its_absolute_lifetime_however_active():
    store = LocalSessionStore()
    sid, session = new_session("t1", "00")
    old = dataclasses.replace(session, created_at=time.time() - ABSOLUTE_S - 1)
    await store.save(sid, old)
    assert await store.load(sid) is None


async def test_a_session_ends_after_idling(monkeypatch):
    store = LocalSessionStore()
    sid, session = new_session("t1", "00")
    await store.save(sid, session)
    later = time.monotonic() + store._sessions.ttl_s + 1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert await store.load(sid) is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_redis_store_falls_back_to_memory_while_redis_is_unreachable():
    redis = Redis(
        host="127.0.0.1",
        port=_closed_port(),
        socket_connect_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    store = RedisSessionStore(redis)
    sid, session = new_session("t1", "00")
    await store.save(sid, session)  # connection refused: kept here instead, never an error
    assert await store.load(sid) == session
    await store.delete(sid)
    assert await store.load(sid) is None
    await redis.aclose()
