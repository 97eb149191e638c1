"""`kopilka replay raw` and `replay events`: their arguments, and the progress they print when
not on a terminal."""

from __future__ import annotations

import argparse
import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from kopilka.cli.progress import Reporter
from kopilka.cli.replay import add_parsers, check_events_args, moment, raw_job, span_of
from kopilka.core.settings import Settings


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


def _raw(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(["replay", "raw", *argv])


def test_resume_state_is_named_after_the_arguments_as_typed(tmp_path):
    """`--from 24h` means another moment each run; the same command must still find its state."""
    first = _raw("--from", "24h", "--to", "5m", "--tenant", "t-1")
    time.sleep(0.01)
    again = _raw("--from", "24h", "--to", "5m", "--tenant", "t-1")
    assert first.since != again.since  # resolved anew...
    assert raw_job(first).state_path(tmp_path) == raw_job(again).state_path(tmp_path)  # ...same
    assert raw_job(first).state_path(tmp_path) != raw_job(
        _raw("--from", "25h", "--to", "5m", "--tenant", "t-1")
    ).state_path(tmp_path)
    assert raw_job(first).state_path(tmp_path) != raw_job(
        _raw("--from", "24h", "--to", "5m", "--tenant", "t-1", "--into-bootstrap", "h:9092")
    ).state_path(tmp_path)
    spans = [span_of(_events("--to-endpoint", "x", "--from", "2h")) for _ in range(2)]
    assert spans[0].digest("x") == spans[1].digest("x")
    assert spans[0].digest("x") != span_of(_events("--to-endpoint", "x", "--from", "3h")).digest(
        "x"
    )


def test_a_dry_run_keeps_no_resume_state(tmp_path):
    """A dry run feeds nothing: progress it saved would make the real run skip records."""
    assert raw_job(_raw("--from", "24h", "--dry-run")).state_path(tmp_path) is None
    assert raw_job(_raw("--from", "24h")).state_path(tmp_path) is not None


def test_a_bad_time_is_refused_naming_the_option():
    with pytest.raises(SystemExit):
        _raw("--from", "yesterday")


def test_replay_state_folder_is_a_setting_relative_to_the_working_directory(monkeypatch):
    monkeypatch.delenv("KOPILKA_REPLAY_STATE_DIR", raising=False)
    assert Settings(_env_file=None).replay_state_dir == Path(".data/replay")
    monkeypatch.setenv("KOPILKA_REPLAY_STATE_DIR", "/var/lib/kopilka/replay")
    assert Settings(_env_file=None).replay_state_dir == Path("/var/lib/kopilka/replay")


def test_progress_is_also_a_set_of_prometheus_gauges():
    reporter = Reporter("replay raw", 1000, out=io.StringIO())
    sample = REGISTRY.get_sample_value
    assert sample("kopilka_replay_records_expected", {"replay": "raw"}) == 1000
    assert sample("kopilka_replay_records_done", {"replay": "raw"}) == 0
    reporter.advance(250)
    assert sample("kopilka_replay_records_done", {"replay": "raw"}) == 250
    assert sample("kopilka_replay_records_per_second", {"replay": "raw"}) > 0
