"""kopilka.core.event_loop: the ingress and the worker run on uvloop unless told otherwise."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from kopilka.core.event_loop import use_event_loop
from kopilka.core.settings import Settings


@pytest.fixture
def policy():
    held = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(held)


def test_uvloop_is_the_default_and_asyncio_can_be_chosen(monkeypatch):
    assert Settings().event_loop == "uvloop"
    monkeypatch.setenv("KOPILKA_EVENT_LOOP", "asyncio")
    assert Settings().event_loop == "asyncio"
    monkeypatch.setenv("KOPILKA_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings()


def test_asyncio_leaves_the_policy_as_it_is(policy):
    before = asyncio.get_event_loop_policy()
    assert use_event_loop("asyncio") == "asyncio"
    assert asyncio.get_event_loop_policy() is before


def test_new_loops_are_uvloops_once_chosen():
    """In a fresh interpreter: the choice is process-wide, made before any loop exists."""
    code = (
        "import asyncio\n"
        "from kopilka.core.event_loop import use_event_loop\n"
        "print(use_event_loop('uvloop'), type(asyncio.new_event_loop()).__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["uvloop", "uvloop"]
