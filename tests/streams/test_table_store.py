"""streams.table_store: the worker's table store writes no RocksDB write-ahead log, and what it
wrote is there again once Faust has let the store go (a clean stop) and opens it anew."""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace

from faust.streams import _current_event

from kopilka.core.settings import Settings
from streams.app import create_app
from streams.table_store import LedgerTable

PARTITION = 2


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def _wal_bytes(path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.log"))


def test_the_store_writes_no_log_and_keeps_its_entries_over_a_clean_stop(tmp_path):
    settings = Settings(_env_file=None, worker_id="store", worker_data_dir=tmp_path)
    table = create_app(settings).state_table  # store="rocksdb://", as the worker runs
    assert isinstance(table, LedgerTable)
    store = table.data
    event = _Event(PARTITION)
    _current_event.set(weakref.ref(event))  # as if processing a record of PARTITION
    try:
        for n in range(200):
            table.data[f"c|t:{n}"] = b'{"v":%d}' % n
        path = store.partition_path(PARTITION)
        assert _wal_bytes(path) == 0  # 200 puts, and nothing in the write-ahead log
        store._dbs.clear()  # what Faust's store does on stop: it drops its databases
        gc.collect()
        assert table.data["c|t:7"] == b'{"v":7}'  # opened again, from the flushed files
        assert len(list(path.glob("*.sst"))) >= 1
    finally:
        _current_event.set(None)
