"""Which event loop Kopilka's processes run on: uvloop's by default, asyncio's on request.

The loop's own machinery (scheduling callbacks and tasks, socket transports) is a large share of
the CPU of every Kopilka process on asyncio's loop: about a quarter of the ingress's per request,
and a tenth of the worker's per purchase. `KOPILKA_EVENT_LOOP=asyncio` goes back to asyncio's
loop (for a platform uvloop does not support, or to compare).
"""

from __future__ import annotations

import asyncio
from typing import Literal

EventLoop = Literal["uvloop", "asyncio"]


def use_event_loop(wanted: EventLoop = "uvloop") -> str:
    """Make new event loops `wanted`'s (uvloop when it is installed); the loop's name, for the
    log. Call it before anything creates a loop."""
    if wanted != "uvloop":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
