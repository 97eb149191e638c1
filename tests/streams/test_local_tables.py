"""streams.local_tables: the local tables survive a clean stop and are dropped after a kill."""

from __future__ import annotations

from streams.local_tables import MARK, LocalTables


def _store(tabledir) -> None:
    (tabledir / "ledger-state-3.db").mkdir(parents=True)
    (tabledir / "ledger-state-3.db" / "000001.log").write_bytes(b"ahead of the changelog")


def test_after_a_clean_stop_the_tables_are_kept_and_the_mark_is_taken_away(tmp_path):
    tables = LocalTables(tmp_path / "tables")
    _store(tables.tabledir)
    tables.stopped_cleanly()
    assert tables.open() is True
    assert (tables.tabledir / "ledger-state-3.db" / "000001.log").exists()
    assert not (tables.tabledir / MARK).exists()  # a kill from now on leaves no mark


def test_without_the_mark_the_tables_are_dropped(tmp_path):
    tables = LocalTables(tmp_path / "tables")
    _store(tables.tabledir)
    assert tables.open() is False
    assert tables.tabledir.exists() and not any(tables.tabledir.iterdir())


def test_a_first_start_has_nothing_to_drop(tmp_path):
    tables = LocalTables(tmp_path / "tables")
    assert tables.open() is False
    assert tables.tabledir.is_dir()
