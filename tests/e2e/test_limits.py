"""Request limits over real HTTP: body caps, content types, JSON bombs, slow clients."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from kopilka.devstack import devservices


async def test_body_over_the_shops_cap_gets_413_declared_or_chunked(api, tenant, set_edge):
    await set_edge(tenant, max_body_bytes=1000)
    big = json.dumps(
        {
            "action": "purchase",
            "payload": {"orderId": "BIG", "amount": 1, "description": "x" * 2000},
        }
    )
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], data=big, headers={"Content-Type": "application/json"}
    )
    assert (status, body["error"]) == (413, "body_too_large")
    assert "1000 bytes" in body["reason"]

    async def chunks():
        for _ in range(4):
            yield b" " * 400

    async with api.session.post(
        f"{api.base}/api/webhook/{tenant['webhook_secret']}",
        data=chunks(),
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 413


async def test_unsupported_content_type_gets_415(api, tenant):
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], data=b"<xml/>", headers={"Content-Type": "application/xml"}
    )
    assert (status, body["error"]) == (415, "unsupported_media_type")


@pytest.mark.parametrize(
    "bomb",
    [
        b"[" * 500_000,  # nesting bomb: refused by a linear scan, never handed to json.loads
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"action":"purchase","payload":{"amount":' + b"9" * 100_000 + b',"orderId":"1"}}',
        b"[" + b"{}," * 300_000 + b"{}]",  # 300,001 orders in one array
    ],
    ids=["deep-array", "deep-object", "huge-number", "many-items"],
)
async def test_json_bombs_are_refused_cheaply(api, tenant, bomb):
    started = time.perf_counter()
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], data=bomb, headers={"Content-Type": "application/json"}
    )
    assert status in (400, 413, 422), body
    assert time.perf_counter() - started < 5  # generous: a bomb must not stall the ingress


@pytest.fixture(scope="module")
def impatient_ingress(stack):
    """An ingress with 1 s header and body timeouts, beside the stack's own."""
    port = devservices.free_port()
    proc = stack.start_ingest(
        stack.data_dir / "logs" / "ingest-impatient.log",
        env={
            "KOPILKA_HTTP_PORT": str(port),
            "KOPILKA_HEADER_TIMEOUT_S": "1",
            "KOPILKA_BODY_TIMEOUT_S": "1",
        },
    )
    yield port
    proc.stop()
    stack.processes.remove(proc)


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return False, received
    return True, received


def test_slow_headers_get_the_connection_closed(impatient_ingress):
    with socket.create_connection(("127.0.0.1", impatient_ingress)) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /api/webhook/x HTTP/1.1\r\nHost: x\r\n")
        for _ in range(6):  # one header line every half second, never finishing
            time.sleep(0.5)
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        closed, received = _closed_within(sock, 5)
        assert closed and received == b""
        assert time.monotonic() - started < 5


def test_a_trickling_body_gets_408(impatient_ingress, tenant):
    with socket.create_connection(("127.0.0.1", impatient_ingress)) as sock:
        head = (
            f"POST /api/webhook/{tenant['webhook_secret']} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"action":')
        _, received = _closed_within(sock, 5)
        assert received.startswith(b"HTTP/1.1 408"), received[:200]
        assert b"body_timeout" in received


async def test_idle_keepalive_is_fine_within_the_timeout(api, impatient_ingress, tenant):
    """The header timer restarts after each response: a client reusing its connection is served."""
    url = f"http://127.0.0.1:{impatient_ingress}/healthz"
    for _ in range(3):
        async with api.session.get(url) as resp:
            assert resp.status == 200
        await asyncio.sleep(0.3)
