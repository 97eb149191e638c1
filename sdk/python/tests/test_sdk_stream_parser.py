"""SSE parsing and the reconnect decisions of the event stream, without a socket."""

from __future__ import annotations

import httpx
import pytest
from kopilka_client import AuthError, KopilkaError, ReconnectPolicy, RetryPolicy, Unavailable
from kopilka_client.core import Config
from kopilka_client.stream import Cursor, SseParser


def feed(parser: SseParser, text: str) -> list:
    return [e for line in text.split("\n") if (e := parser.feed(line)) is not None]


def test_events_comments_and_multiline_data():
    parser = SseParser()
    events = feed(
        parser,
        ": heartbeat\n\n"
        'id: 7\nevent: bonus_awarded\ndata: {"type": "bonus_awarded",\ndata:  "points": 5}\n\n'
        "retry: 2500\n: keep-alive\n"
        'id: 8\ndata: {"type": "bonus_spent"}\n\n',
    )
    assert [(e.id, e.type, e.data) for e in events] == [
        ("7", "bonus_awarded", {"type": "bonus_awarded", "points": 5}),
        ("8", "bonus_spent", {"type": "bonus_spent"}),
    ]
    assert parser.retry_ms == 2500 and parser.last_event_id == "8"


def test_an_event_cut_off_before_its_blank_line_does_not_move_the_resume_point():
    parser = SseParser(last_event_id="7")
    feed(parser, 'id: 8\ndata: {"type": "bonus_spent"}')  # the connection drops here
    assert parser.last_event_id == "7"


def cursor(**policy) -> Cursor:
    cfg = Config("http://k.test", api_key="kpk_1")
    backoff = RetryPolicy(base_delay_s=0.5, max_delay_s=4, jitter=lambda: 1.0)
    return Cursor(
        cfg,
        types=["bonus_spent", "bonus_awarded"],
        last_event_id="41",
        policy=ReconnectPolicy(backoff=backoff, **policy),
    )


def test_the_request_resumes_after_the_last_event_with_the_filter():
    c = cursor()
    request = c.request()
    assert request.url.path == "/api/v1/events/stream"
    assert request.url.params["types"] == "bonus_awarded,bonus_spent"
    assert request.headers["Last-Event-ID"] == "41"
    assert request.headers["Authorization"] == "Bearer kpk_1"
    assert request.headers["Accept"] == "text/event-stream"
    c.feed("id: 42")
    c.feed('data: {"type": "bonus_spent"}')
    c.feed("")
    assert c.request().headers["Last-Event-ID"] == "42"


def test_reconnect_delays_back_off_and_reset_after_an_event():
    c = cursor()
    assert [c.failed(None) for _ in range(5)] == [0.5, 1, 2, 4, 4]
    c.feed('data: {"type": "x"}')
    c.feed("")
    assert c.failed(httpx.ConnectError("refused")) == 0.5


def test_the_servers_retry_hint_wins():
    c = cursor()
    c.feed("retry: 1500")
    assert c.failed(None) == 1.5
    busy = Unavailable("later", status=503, retry_after=3)
    assert c.failed(busy) == 3


def test_a_refused_key_is_final_and_failures_can_be_capped():
    c = cursor()
    with pytest.raises(AuthError):
        c.connected(
            httpx.Response(
                401, json={"error": "unauthorized", "field": None, "reason": "unknown API key"}
            )
        )
    with pytest.raises(AuthError):
        c.failed(AuthError("unknown API key", status=401))
    capped = cursor(max_failures=2)
    capped.failed(None)
    capped.failed(None)
    with pytest.raises(Unavailable, match="3 times"):
        capped.failed(None)


def test_an_answer_that_is_not_a_stream_is_final():
    c = cursor()  # a wrong base_url: a page, not Kopilka; retrying would not change it
    with pytest.raises(KopilkaError) as err:
        c.connected(httpx.Response(200, text="<html>", headers={"Content-Type": "text/html"}))
    assert "text/event-stream" in str(err.value)
    with pytest.raises(KopilkaError):
        c.failed(err.value)
