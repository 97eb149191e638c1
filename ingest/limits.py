"""Request limits at the edge: the body cap (per tenant), the body read timeout, slow headers.

- Body cap: a declared `Content-Length` over the cap is refused before a byte of the body is
  read; a chunked body is read only up to the cap plus one byte. The process-wide
  `client_max_size` (settings.max_body_bytes) is the ceiling of every tenant's cap.
- Body timeout: the whole body must arrive within `body_timeout_s` of the handler starting to
  read it, else 408; a client trickling bytes cannot hold the request open.
- Header timeout: `server_options` sets aiohttp's keep-alive timer to `header_timeout_s`. The
  timer runs from the moment a connection opens (and again after each response), is not reset by
  incoming bytes, and closes the connection if the request headers are still incomplete when it
  fires: slow-header (slowloris) connections are dropped after that long.
- JSON bombs: nesting depth and item counts are checked by `schemas.inbound` in one linear scan
  before `json.loads`; with the body cap that bounds the work per request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from kopilka.core.settings import Settings
from kopilka.directory.tenants import Tenant

_CHUNK = 64 * 1024


@dataclass
class LimitExceeded(Exception):
    status: int
    code: str
    reason: str
    size: int | None = None


def body_cap(tenant: Tenant, settings: Settings) -> int:
    """The tenant's own cap, never above the process-wide ceiling."""
    own = tenant.max_body_bytes or settings.max_body_bytes
    return min(own, settings.max_body_bytes)


def check_declared_size(request: web.Request, cap: int) -> None:
    if request.content_length is not None and request.content_length > cap:
        raise LimitExceeded(
            413, "body_too_large", f"body exceeds {cap} bytes", request.content_length
        )


async def read_body(request: web.Request, cap: int, timeout_s: float) -> bytes:
    """The whole body, or LimitExceeded (413 over the cap, 408 too slow)."""
    check_declared_size(request, cap)
    content = request.content
    if content.is_eof():  # arrived with the headers (most webhooks): no timer, no waiting
        body = content.read_nowait()
        if len(body) > cap:
            raise LimitExceeded(413, "body_too_large", f"body exceeds {cap} bytes", len(body))
        return body
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await content.read(_CHUNK):
                size += len(chunk)
                if size > cap:
                    raise LimitExceeded(413, "body_too_large", f"body exceeds {cap} bytes", size)
                chunks.append(chunk)
    except TimeoutError:
        raise LimitExceeded(
            408, "body_timeout", f"the body did not arrive within {timeout_s:g} s", size
        ) from None
    return b"".join(chunks)


def server_options(settings: Settings) -> dict:
    """Keyword arguments for `web.run_app` / `AppRunner` that bound slow clients."""
    return {"keepalive_timeout": settings.header_timeout_s}
