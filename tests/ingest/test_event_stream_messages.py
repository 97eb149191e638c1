"""How events and positions are written on the wire (text/event-stream)."""

from __future__ import annotations

from ingest.event_stream import _max, _message


def test_an_event_message_has_id_event_and_the_data_unchanged():
    value = b'{"type":"bonus_awarded","points":5}'
    assert _message("tok", "bonus_awarded", value) == (
        b"id: tok\nevent: bonus_awarded\ndata: " + value + b"\n\n"
    )


def test_a_value_over_several_lines_is_one_data_field_per_line():
    # an EventSource joins data lines with "\n": the client gets the value back whole
    msg = _message("t", "x", b'{\n  "a": 1\n}')
    assert msg == b'id: t\nevent: x\ndata: {\ndata:   "a": 1\ndata: }\n\n'


def test_vectors_merge_element_wise():
    assert _max([1, 9, 3], [2, 4, 3]) == [2, 9, 3]
