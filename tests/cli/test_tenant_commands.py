"""Argument parsing of `kopilka tenants edge` and `rotate-secret` (no database needed)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kopilka.cli.main import parser


def parse(*argv: str):
    return parser().parse_args(["tenants", *argv])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("15", 15)],
)
def test_grace_durations(text, expected):
    args = parse("rotate-secret", "T", "--grace", text)
    assert args.grace == timedelta(seconds=expected)


def test_rotate_defaults_to_all_credentials_and_a_day_of_grace():
    args = parse("rotate-secret", "T")
    assert (args.grace, args.only) == (timedelta(hours=24), None)
    args = parse("rotate-secret", "T", "--only", "api-key", "--only", "signing-secret")
    assert args.only == ["api-key", "signing-secret"]


@pytest.mark.parametrize("bad", ["1w", "1.5h", "soon", ""])
def test_bad_grace_is_refused(bad, capsys):
    with pytest.raises(SystemExit):
        parse("rotate-secret", "T", "--grace", bad)
    assert "duration" in capsys.readouterr().err


def test_edge_options_left_out_are_not_changed_and_default_resets():
    args = parse("edge", "T", "--rate-limit", "600", "--max-body-bytes", "default")
    assert args.rate_limit == 600 and args.max_body_bytes is None
    assert not hasattr(args, "signatures") and not hasattr(args, "rate_burst")


@pytest.mark.parametrize("bad", [["--rate-limit", "0"], ["--signatures", "sometimes"]])
def test_edge_refuses_nonsense(bad):
    with pytest.raises(SystemExit):
        parse("edge", "T", *bad)
