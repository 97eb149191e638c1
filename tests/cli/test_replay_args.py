"""`kopilka replay raw` and `replay events`: their arguments, and the progress they print when
not on a terminal."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime, timedelta

import pytest

from kopilka.cli_replay import add_parsers, check_events_args, moment
from kopilka.progress import Reporter


def test_moment_takes_iso_times_and_durations_ago():
    assert moment("2026-11-27T10:00:00+03:00") == datetime(2026, 11, 27, 7, tzinfo=UTC)
    assert moment("2026-11-27T10:00:00") == datetime(2026, 11, 27, 10, tzinfo=UTC)
    ago = datetime.now(UTC) - moment("90m")
    assert timedelta(minutes=89) < ago < timedelta(minutes=91)
    with pytest.raises(argparse.ArgumentTypeError):
        moment("yesterday")


def test_progress_without_a_terminal_is_a_line_per_tenth_and_a_summary():
    out = io.StringIO()
    reporter = Reporter("replay raw", 1000, out=out)
    for _ in range(100):
        reporter.advance(10)
    reporter.close("1,000 records read")
    lines = out.getvalue().splitlines()
    assert [line.split(":")[1].split()[0] for line in lines[:-1]] == [
        f"{p}%" for p in range(10, 101, 10)
    ]
    assert lines[-1].startswith("replay raw: 1,000 records read in ")


def _events(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(["replay", "events", *argv])


def test_replay_events_takes_one_destination():
    assert check_events_args(_events("--into", "postgres")) is None  # a whole rebuild
    assert check_events_args(_events("--into", "postgres", "--from", "24h")) is None  # catch up
    assert check_events_args(_events("--to-endpoint", "x", "--from", "1h", "--to", "5m")) is None
    for argv in (
        [],
        ["--into", "postgres", "--to-endpoint", "x"],
        ["--into", "mysql"],
    ):
        with pytest.raises(SystemExit):
            _events(*argv)


def test_replay_events_refuses_what_makes_no_sense_in_words():
    assert "needs --from" in check_events_args(_events("--to-endpoint", "x"))
    assert "need --from" in check_events_args(_events("--into", "postgres", "--to", "1h"))
    assert "for a rebuild" in check_events_args(
        _events("--into", "postgres", "--from", "1h", "--restart")
    )
    assert "--batch" in check_events_args(_events("--into", "postgres", "--batch", "0"))
