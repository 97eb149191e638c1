"""The benchmark's own tools: a miscounting load generator or profile summary would print wrong
figures without anyone noticing, so they are checked here (pure, loopback only, fast)."""

from __future__ import annotations

import asyncio
import os

import pytest
from bench import e2e_size
from ingress_stages import render, summarise
from ingress_variant import patch
from loadgen import hammer, purchase_factory
from procstat import cpu_seconds, rss_mb
from pyspy_profile import top_functions


async def _serve(answer: list[bytes], seen: list[bytes]) -> asyncio.Server:
    """A keep-alive HTTP server that writes each answer in the given pieces, a pause between."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                seen.append(await reader.readexactly(length))
                for piece in answer:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.001)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(
    "answer",
    [
        [b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nhello"],
        [b"HTTP/1.1 202 Acc", b"epted\r\nContent-Le", b"ngth: 5\r\n\r\nhel", b"lo"],
        [b"HTTP/1.1 429 Too Many\r\ncontent-length: 0\r\n\r\n"],
        [b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", b"0\r\n\r\n"],
    ],
    ids=["whole", "split", "empty-body", "chunked"],
)
async def test_hammer_counts_every_answer(answer: list[bytes]) -> None:
    seen: list[bytes] = []
    server = await _serve(answer, seen)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await hammer(
            "127.0.0.1", port, "/x", purchase_factory("T"), concurrency=3, count=40
        )
    finally:
        server.close()
    status = answer[0][9:12].decode()
    assert result.requests == 40
    assert dict(result.statuses) == {status: 40}
    assert len(result.latencies) == 40 and all(x > 0 for x in result.latencies)
    assert len(set(seen)) == 40  # a fresh order id in every body
    assert b'"orderId":"T-00000039"' in b"".join(seen)


async def test_hammer_stops_after_seconds() -> None:
    server = await _serve([b"HTTP/1.1 202 A\r\nContent-Length: 0\r\n\r\n"], [])
    port = server.sockets[0].getsockname()[1]
    try:
        result = await hammer("127.0.0.1", port, "/", purchase_factory("S"), seconds=0.3)
    finally:
        server.close()
    assert (
        0.3 <= result.elapsed < 2 and result.requests > 0 and result.count("202") == result.requests
    )


def test_top_functions_sums_own_time_per_function_not_per_line() -> None:
    frames = [
        {"name": "main", "file": "/app/run.py", "line": 1},
        {"name": "leaf", "file": "/app/x/work.py", "line": 10},
        {"name": "leaf", "file": "/app/x/work.py", "line": 12},
        {"name": "other", "file": "/app/x/work.py", "line": 20},
    ]
    profile = {
        "name": "MainThread",
        "samples": [[0, 1], [0, 2], [0, 3], [0]],
        "weights": [0.02, 0.02, 0.02, 0.02],
    }
    top, busy = top_functions({"shared": {"frames": frames}, "profiles": [profile]})
    assert top[0] == ("leaf (x/work.py)", pytest.approx(0.04))
    assert dict(top) == {
        "leaf (x/work.py)": pytest.approx(0.04),
        "other (x/work.py)": pytest.approx(0.02),
        "main (app/run.py)": pytest.approx(0.02),
    }
    assert busy == {"MainThread": pytest.approx(0.08)}


def test_e2e_size_follows_the_catch_up_rate_within_bounds() -> None:
    assert e2e_size(None) == e2e_size(10) == 2_000
    assert e2e_size(435) == 20_000
    assert e2e_size(5_000) == 30_000


def test_procstat_reads_this_process() -> None:
    before = cpu_seconds([os.getpgrp()])
    sum(i * i for i in range(2_000_000))
    assert cpu_seconds([os.getpgrp()]) > before
    assert rss_mb([os.getpgrp()]) > 5


def test_stage_costs_are_full_minus_each_variant_over_median_rounds() -> None:
    def turn(cpu: float, refused: int = 0) -> dict:
        return {
            "server_cpu_ms_per_req": cpu,
            "rps": round(1 / cpu),
            "server_cpu_pct": 99,
            "client_cpu_pct": 12,
            "non_202": {"503": refused} if refused else {},
        }

    runs = {
        "full": [turn(0.12), turn(0.10), turn(0.11)],
        "no_parse": [turn(0.09), turn(0.08, refused=3), turn(0.30, refused=2)],
        "answer_only": [turn(0.03)],
    }
    table = summarise(runs)
    assert table["full"]["cpu_ms"] == 0.11
    assert table["no_parse"]["cpu_ms"] == 0.09
    assert table["no_parse"]["part_cost_ms"] == 0.02
    assert "part_cost_ms" not in table["answer_only"]
    assert table["no_parse"]["non_202"] == 5 and table["full"]["non_202"] == 0
    assert "0.0200" in render(table)


def test_the_ingress_still_looks_up_at_call_time_what_the_variants_replace() -> None:
    """Else a refactor of ingest/webhooks.py would leave a variant measuring `full` again."""
    from ingest import webhooks

    assert "_handle" in webhooks.receive_webhook.__code__.co_names
    assert {"parse_webhook", "publish"} <= set(webhooks._handle.__code__.co_names)


async def test_each_variant_takes_out_only_the_part_it_names(monkeypatch) -> None:
    from redis.asyncio import Redis

    from ingest import webhooks
    from ingest.order_routes import RedisOrderRoutes
    from ingest.ratelimit import Quota, RedisLimiter

    for owner, name in [
        (webhooks, "parse_webhook"),
        (webhooks, "publish"),
        (webhooks, "_handle"),
        (RedisOrderRoutes, "remember"),
        (RedisLimiter, "hit"),
    ]:
        monkeypatch.setattr(owner, name, getattr(owner, name))  # put back after the test
    original = dict(vars(webhooks))
    remember, hit = RedisOrderRoutes.remember, RedisLimiter.hit
    patch("full")
    assert dict(vars(webhooks)) == original
    patch("no_publish")
    assert await webhooks.publish("request", "t", "e", b"record", b"key", {}) is None
    assert webhooks.parse_webhook is original["parse_webhook"]
    assert RedisOrderRoutes.remember is remember and RedisLimiter.hit is hit

    patch("no_parse")  # one parse per customer: the records keep their keys
    make = purchase_factory("V", customers=2)
    first, second, third = (webhooks.parse_webhook(make(n), "application/json") for n in range(3))
    assert first.purchases[0].email != second.purchases[0].email
    assert third is first

    patch("no_rate_limit")  # this process's bucket, no Redis call (no server listens here)
    limiter = RedisLimiter(Redis(host="127.0.0.1", port=1))
    decision = await limiter.hit("t", Quota(per_minute=60, burst=2))
    assert decision.allowed and decision.remaining == 1
    assert RedisOrderRoutes.remember is remember

    patch("no_order_routes")
    assert await RedisOrderRoutes.remember(None, "t", "parsed", b"key") is None

    patch("answer_only")

    class Request:
        read_calls = 0

        async def read(self) -> bytes:
            self.read_calls += 1
            return b"{}"

    request = Request()
    answer = await webhooks._handle(request)
    assert answer.status == 202 and request.read_calls == 1

    monkeypatch.setattr(RedisOrderRoutes, "remember", remember)
    monkeypatch.setattr(RedisLimiter, "hit", hit)
    patch("parse_and_kafka")
    assert RedisOrderRoutes.remember is not remember and RedisLimiter.hit is not hit
    with pytest.raises(SystemExit):
        patch("no_such_part")
