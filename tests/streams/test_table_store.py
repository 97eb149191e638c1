"""streams.table_store: the worker's table store writes no RocksDB write-ahead log, and what it
wrote reaches its files when Faust lets a database go (a stop, a partition given up): the
property its lack of a log relies on. Its partitions' databases share one memory budget."""

from __future__ import annotations

import gc
import time

from faust.types import TP

from kopilka.core.settings import Settings
from streams.app import create_app
from streams.table_store import MB, LedgerTable, shared_memory

PARTITION = 2


def _wal_bytes(path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.log"))


async def test_the_store_writes_no_log_and_keeps_its_entries_over_a_clean_stop(
    tmp_path, processing
):
    settings = Settings(_env_file=None, worker_id="store", worker_data_dir=tmp_path)
    table = create_app(settings).state_table  # store="rocksdb://", as the worker runs
    assert isinstance(table, LedgerTable)
    store = table.data
    processing(PARTITION)
    for n in range(200):
        table.data[f"c|t:{n}"] = b'{"v":%d}' % n
    path = store.partition_path(PARTITION)
    assert _wal_bytes(path) == 0  # 200 puts, and nothing in the write-ahead log
    assert not list(path.glob("*.sst"))  # all of it in memory still
    reading = store._dbs[PARTITION].iter()  # an iterator left open, as a sweep might leave one
    await store.stop()  # Faust drops its databases: RocksDB flushes each as it closes
    assert len(list(path.glob("*.sst"))) >= 1
    del reading
    gc.collect()
    assert table.data["c|t:7"] == b'{"v":7}'  # opened again, from its files


def test_a_partition_given_up_is_flushed(tmp_path, processing):
    settings = Settings(_env_file=None, worker_id="store", worker_data_dir=tmp_path)
    table = create_app(settings).state_table
    store = table.data
    processing(PARTITION)
    table.data["c|t:1"] = b'{"v":1}'
    path = store.partition_path(PARTITION)
    [changelog] = table.changelog_topic.topics
    store.revoke_partitions(table, {TP(changelog, PARTITION)})
    assert PARTITION not in store._dbs and len(list(path.glob("*.sst"))) >= 1


def test_every_partition_shares_one_memory_budget_and_flushes_past_it(tmp_path, processing):
    settings = Settings(
        _env_file=None, worker_id="store", worker_data_dir=tmp_path, worker_store_memory_mb=16
    )
    table = create_app(settings).state_table
    assert table.store_memory_mb == 16
    block_cache, memtables = shared_memory(16)
    value = b"x" * 4096
    for partition in (2, 3):
        processing(partition)
        table.data[f"c|t:{partition}"] = b"{}"
    held = memtables.get_usage()
    assert 0 < held <= block_cache.get_usage()  # memtables of both databases, charged to it
    for n in range(8_000):  # 32 MB, twice the budget, into partition 3 alone
        table.data[f"c|t:{n}"] = value
    deadline = time.monotonic() + 10  # flushes run on RocksDB's threads: a busy machine lags
    while memtables.get_usage() > 16 * MB and time.monotonic() < deadline:
        time.sleep(0.05)
    assert memtables.get_usage() <= 16 * MB  # not the 32 MB written: the rest was flushed
    assert list(table.data.partition_path(3).glob("*.sst"))
    assert table.data["c|t:7"] == value
