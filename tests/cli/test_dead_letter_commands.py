"""Argument parsing of `kopilka dead-letters` and `kopilka reconcile` (no services needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kopilka.cli.dead_letters import UsageError, list_filters, redrive_target, since
from kopilka.cli.main import parser
from kopilka.directory.dead_letters import Filters, encode_cursor

TENANT = "0b7c3c0e-8a5e-4f4e-9a59-2f1f7a3e9d10"


def parse(*argv: str):
    return parser().parse_args(list(argv))


def test_since_takes_an_age_or_a_time():
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert since("24h", now) == now - timedelta(hours=24)
    assert since("90s", now) == now - timedelta(seconds=90)
    assert since("2026-11-27T10:00:00+03:00") == datetime(2026, 11, 27, 7, tzinfo=UTC)
    assert since("2026-11-27T10:00:00") == datetime(2026, 11, 27, 10, tzinfo=UTC)


def test_list_options_become_filters():
    at = datetime(2026, 11, 27, tzinfo=UTC)
    cursor = encode_cursor(at, TENANT)
    args = parse(
        "dead-letters",
        "list",
        "--tenant",
        TENANT,
        "--stage",
        "ledger",
        "--code",
        "bad",
        "--redriven",
        "no",
        "--limit",
        "10",
        "--before",
        cursor,
        "--json",
    )
    assert args.limit == 10 and args.json
    f = list_filters(args)
    assert (f.tenant_id, f.stage, f.code, f.redriven) == (TENANT, "ledger", "bad", False)
    assert f.before[0] == at
    assert list_filters(parse("dead-letters", "list")) == Filters()


@pytest.mark.parametrize(
    "argv",
    [
        ("list", "--limit", "0"),
        ("list", "--limit", "1001"),
        ("list", "--stage", "nowhere"),
        ("list", "--since", "yesterday"),
        ("show",),
    ],
)
def test_bad_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse("dead-letters", *argv)
    assert exit_.value.code == 2


def test_bad_cursor_is_a_usage_error():
    with pytest.raises(UsageError):
        list_filters(parse("dead-letters", "list", "--before", "nonsense"))


def test_redrive_takes_ids_or_a_tenant_but_not_both():
    assert redrive_target(parse("dead-letters", "redrive", "a", "b", "a")) == ["a", "b", "a"]
    args = parse("dead-letters", "redrive", "--tenant", TENANT, "--code", "x", "--dry-run")
    target = redrive_target(args)
    assert isinstance(target, Filters) and (target.tenant_id, target.code) == (TENANT, "x")
    assert args.dry_run and not args.force
    with pytest.raises(UsageError):
        redrive_target(parse("dead-letters", "redrive"))
    with pytest.raises(UsageError):
        redrive_target(parse("dead-letters", "redrive", "a", "--tenant", TENANT))
    with pytest.raises(UsageError):  # filters without a tenant would redrive everyone's
        redrive_target(parse("dead-letters", "redrive", "--stage", "ledger"))


def test_reconcile_options():
    args = parse("reconcile")
    assert (args.tenant, args.repair, args.json, args.settle) == (None, False, False, 5.0)
    args = parse("reconcile", "--tenant", TENANT.upper(), "--repair", "--json", "--settle", "0")
    assert (args.tenant, args.repair, args.json, args.settle) == (TENANT, True, True, 0.0)
    with pytest.raises(SystemExit):
        parse("reconcile", "--tenant", "shop-1")


def test_redrive_skips_letters_already_sent_unless_forced_and_unknown_topics_always():
    from kopilka.directory.dead_letters import StoredDeadLetter
    from kopilka.directory.redrive import triage

    def stored(dl_id: str, topic: str = "webhooks.raw", redriven: bool = False):
        at = datetime(2026, 11, 27, tzinfo=UTC)
        return StoredDeadLetter(
            id=dl_id, stage="normalize", source_topic=topic, partition=0, offset=1, key=None,
            value=b"{}", tenant_id=None, request_id=None, code="c", reason="r", error=None,
            attempts=1, dead_at=at, redriven_at=at if redriven else None,
            redrive_count=int(redriven),
        )  # fmt: skip

    letters = [stored("a"), stored("b", redriven=True), stored("c", topic="__consumer_offsets")]
    go, skipped = triage(letters, force=False)
    assert [dl.id for dl in go] == ["a"]
    assert [s["id"] for s in skipped] == ["b", "c"]
    go, skipped = triage(letters, force=True)
    assert [dl.id for dl in go] == ["a", "b"] and [s["id"] for s in skipped] == ["c"]
