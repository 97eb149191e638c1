"""`kopilka ingest --procs 2` (KOPILKA_INGRESS_PROCS=2): two processes on one port, both answer.

Which process holds a connection is read from /proc: a child's open sockets (/proc/PID/fd) matched
with the established TCP connections on the port (/proc/net/tcp).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from kopilka.devstack import devservices

PURCHASE = (
    '{"action":"purchase","payload":{"email":"p%d@procs.example.com","amount":10,"orderId":"P-%d"}}'
)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:  # field 4 of stat(5): the parent's pid
                found.append(int(entry.name))
    return sorted(found)


def _sockets(port: int, state: str) -> set[str]:
    """Inodes of IPv4 TCP sockets in `state` (01 established, 0A listening) on local `port`."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if int(cols[1].split(":")[1], 16) == port and cols[3] == state:
            inodes.add(cols[9])
    return inodes


def _held(pid: int, inodes: set[str]) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def _wait_for(predicate, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def _listening_children(parent: int, port: int) -> list[int]:
    kids = _children(parent)
    listening = _sockets(port, "0A")
    return kids if len(kids) == 2 and all(_held(k, listening) for k in kids) else []


@pytest.fixture
def procs_ingress(stack):
    port = devservices.free_port()
    proc = stack.start_ingest(
        stack.data_dir / "logs" / "ingest-procs.log",
        env={"KOPILKA_HTTP_PORT": str(port), "KOPILKA_INGRESS_PROCS": "2"},
    )
    yield port, proc
    proc.stop()
    stack.processes.remove(proc)


async def test_two_processes_share_the_port_and_both_answer(procs_ingress, tenant):
    port, proc = procs_ingress
    kids = _wait_for(lambda: _listening_children(proc.proc.pid, port))
    url = f"http://127.0.0.1:{port}/api/webhook/{tenant['webhook_secret']}"

    held: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:
        # 32 requests at once: 32 connections, each kept alive in the pool afterwards
        async def one(i: int) -> int:
            body = PURCHASE % (i, i)
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(one(i) for i in range(32)))
        established = _sockets(port, "01")
        held = {kid: _held(kid, established) for kid in kids}
        metrics = await (await session.get(f"http://127.0.0.1:{port}/metrics")).text()
    assert statuses == [202] * 32
    assert all(count > 0 for count in held.values()), held  # the kernel spread them over both
    accepted = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('kopilka_webhook_requests_total{status="202"}')
    ]
    assert accepted and accepted[0] >= 32  # /metrics adds up both processes


async def test_a_killed_process_is_replaced_and_sigterm_stops_all(procs_ingress, tenant):
    port, proc = procs_ingress
    first, second = _wait_for(lambda: _listening_children(proc.proc.pid, port))
    os.kill(first, signal.SIGKILL)
    # connections queued on the dead process's socket are reset (SO_REUSEPORT): new ones
    # go to the living process once the dead one's socket is closed
    _wait_for(lambda: not _alive([first]), 10)
    url = f"http://127.0.0.1:{port}/api/webhook/{tenant['webhook_secret']}"
    async with aiohttp.ClientSession() as session:  # the other one answers meanwhile
        async with session.post(
            url, data=PURCHASE % (900, 900), headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 202
    kids = _wait_for(
        lambda: (k := _listening_children(proc.proc.pid, port)) and first not in k and k
    )
    assert second in kids and len(kids) == 2

    os.kill(proc.proc.pid, signal.SIGTERM)  # the parent only: it passes the signal on
    assert proc.proc.wait(timeout=30) == 0
    assert not _alive(kids)
