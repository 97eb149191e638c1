"""The ledger table's local RocksDB store, written without RocksDB's write-ahead log.

RocksDB appends every put to its write-ahead log first, so that a crash does not lose what was
still in memory. For this store that log buys nothing: the table's source of truth is its
changelog topic, and a worker that did not stop cleanly drops its local tables and restores
them whole from the changelog (streams.local_tables). What is in memory reaches the store's
files when Faust lets a partition's database go (at a stop, and when the partition is given
up): RocksDB flushes a store written without its log when it closes
(tests/streams/test_table_store.py). Faust keeps each partition's persisted changelog offset in
the same store, written after the entries it covers, so a flush that did not happen would leave
an older but consistent store that a restart brings up to date from the changelog. Three or
four puts a purchase (two entries and the persisted offsets) each made a write to the log file.
"""

from __future__ import annotations

from faust.stores import rocksdb
from faust.types import StoreT
from rocksdict import WriteOptions

from streams.changelog_barrier import DurableTable


def without_wal(store: StoreT) -> StoreT:
    """`store`, each partition's database (as Faust opens it) writing without the log."""
    if not isinstance(store, rocksdb.Store) or not store.use_rocksdict:  # memory:// in tests
        return store
    options = WriteOptions()
    options.disable_wal = True
    open_partition = store._open_for_partition

    def opened(partition: int):
        db = open_partition(partition)
        db.set_write_options(options)
        return db

    store._open_for_partition = opened  # type: ignore[method-assign]
    return store


class LedgerTable(DurableTable):
    """The worker's table: changelog writes the commit barrier waits for, a store without a
    write-ahead log."""

    def _new_store_by_url(self, url):
        return without_wal(super()._new_store_by_url(url))
