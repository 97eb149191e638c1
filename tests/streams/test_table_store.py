"""streams.table_store: the worker's table store writes no RocksDB write-ahead log, and what it
wrote reaches its files when Faust lets a database go (a stop, a partition given up): the
property its lack of a log relies on. Its partitions' databases share one block cache."""

from __future__ import annotations

import gc
import time

from faust.types import TP

from kopilka.core.settings import Settings
from streams.app import create_app
from streams.table_store import WRITE_BUFFER_BYTES, LedgerTable, shared_cache

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


def _flushed(db, within_s: float = 10.0) -> bool:
    """Has the background flush of the full memtables finished? (Until it has, the entries it
    holds are read from memory, not through the block cache.)"""
    deadline = time.monotonic() + within_s
    while db.property_int_value("rocksdb.num-immutable-mem-table"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_partitions_share_one_cache_and_flush_small_memtables(tmp_path, processing):
    settings = Settings(
        _env_file=None, worker_id="store", worker_data_dir=tmp_path, worker_store_cache_mb=8
    )
    table = create_app(settings).state_table
    store = table.data
    value = b"x" * 4096
    for partition in (2, 3):  # 6 MB each: past a 4 MB memtable, far below Faust's 64 MB
        processing(partition)
        for n in range(1_500):
            table.data[f"c|t:{n}"] = value
    block_cache = shared_cache(8)
    for partition in (2, 3):
        path = store.partition_path(partition)
        assert _flushed(store._dbs[partition])  # though never closed
        assert list(path.glob("*.sst"))
        [options] = sorted(path.glob("OPTIONS-*"))[-1:]
        assert f"write_buffer_size={WRITE_BUFFER_BYTES}" in options.read_text()
        processing(partition)
        before = block_cache.get_usage()
        assert table.data["c|t:1"] == value  # a flushed entry: read through the cache
        assert block_cache.get_usage() > before  # this partition's blocks, in the one cache
