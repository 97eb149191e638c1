"""Dashboard sessions: an opaque random id in the cookie, the session itself on the server.

Why server-side and not a signed cookie: signing out (or a stolen cookie being revoked) really
ends the session at once, no new server secret has to be configured, rotated and kept equal on
every replica, and the cookie carries nothing but 256 random bits. The session lives in Redis
when `REDIS_URL` is set (shared by every ingress process, like the rate limits), else in this
process's memory. It is stored under the SHA-256 of its id, so a copy of Redis's data holds no
usable cookie. A session holds the shop's id, the digest of the API key it was opened with
(checked on every request, so a rotated-out key ends its sessions), and its CSRF token.

Sessions end after `IDLE_S` without a request and `ABSOLUTE_S` after sign-in, whichever is first.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from kopilka.core.cache import TTLCache
from kopilka.core.logging import get_logger

log = get_logger(__name__)

COOKIE = "kopilka_session"
IDLE_S = 2 * 3600
ABSOLUTE_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    tenant_id: str
    key_digest: str  # hex SHA-256 of the API key signed in with; never the key
    csrf: str
    created_at: float  # wall-clock seconds

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) - self.created_at > ABSOLUTE_S

    def csrf_ok(self, given: str | None) -> bool:
        """Constant-time comparison of a form's token with the session's."""
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf.encode())


def new_session(tenant_id: str, key_digest: str) -> tuple[str, Session]:
    """(cookie value, session): both random, the cookie value is never stored."""
    return secrets.token_urlsafe(32), Session(
        tenant_id, key_digest, secrets.token_urlsafe(32), time.time()
    )


def _storage_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore(Protocol):
    backend: str

    async def save(self, session_id: str, session: Session) -> None: ...
    async def load(self, session_id: str) -> Session | None: ...
    async def delete(self, session_id: str) -> None: ...


class LocalSessionStore:
    """This process's memory: sessions end with the process and are not seen by other replicas."""

    backend = "in-process"

    def __init__(self, max_sessions: int = 100_000) -> None:
        self._sessions: TTLCache[str, Session] = TTLCache(max_sessions, IDLE_S)

    async def save(self, session_id: str, session: Session) -> None:
        self._sessions.set(_storage_key(session_id), session)

    async def load(self, session_id: str) -> Session | None:
        key = _storage_key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expired():
            self._sessions.pop(key)
            return None
        self._sessions.set(key, session)  # sliding idle timeout
        return session

    async def delete(self, session_id: str) -> None:
        self._sessions.pop(_storage_key(session_id))


class RedisSessionStore:
    """Redis, shared by every ingress process. While Redis is unreachable this process's own
    store takes over (a warning at most once a minute): sessions opened meanwhile live only
    here, and ones opened before need a new sign-in — never an open door."""

    backend = "redis"

    def __init__(self, redis: Redis, prefix: str = "kopilka:dashboard:session:") -> None:
        self._redis, self._prefix = redis, prefix
        self._fallback = LocalSessionStore()
        self._warned_at = -math.inf

    def _down(self, exc: Exception) -> None:
        if time.monotonic() - self._warned_at > 60:
            self._warned_at = time.monotonic()
            log.warning("dashboard_sessions_redis_unavailable", error=type(exc).__name__)

    async def save(self, session_id: str, session: Session) -> None:
        try:
            await self._redis.set(
                self._prefix + _storage_key(session_id), orjson.dumps(asdict(session)), ex=IDLE_S
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)
            await self._fallback.save(session_id, session)

    async def load(self, session_id: str) -> Session | None:
        key = self._prefix + _storage_key(session_id)
        try:
            raw = await self._redis.getex(key, ex=IDLE_S)  # read and slide the idle timeout
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)
            return await self._fallback.load(session_id)
        if raw is None:
            return await self._fallback.load(session_id)
        try:
            session = Session(**orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError):
            return None
        return None if session.expired() else session

    async def delete(self, session_id: str) -> None:
        await self._fallback.delete(session_id)
        try:
            await self._redis.delete(self._prefix + _storage_key(session_id))
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)
