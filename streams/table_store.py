"""The ledger table's local RocksDB store: without a write-ahead log, in bounded memory.

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

Memory. Faust opens each partition's database with RocksDB options of its own: a 2 GB block
cache and up to three 64 MB memtables, each per database, and a worker holds a database per
partition it processes or stands by for (32 of each by default). Nothing bounded the sum, and
without a log a memtable is flushed only when full: under a long load the worker grew by about
50 MB per 10,000 purchases, to about 1 GB. Here every database of the process shares one block
cache of `cache_mb` (`worker_store_cache_mb`), and a memtable is flushed at 4 MB, so a database
holds at most 3 x 4 MB while its flushes are behind and usually less than 4 MB.
A write buffer manager (one memtable budget for all databases) was tried and left out: it flushes
only the database being written, so while one customer's large batch writes one partition, the
memtables the other partitions keep would make that one flush at nearly every put.
"""

from __future__ import annotations

from functools import cache

from faust.stores import rocksdb
from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, Options, WriteOptions

from streams.changelog_barrier import DurableTable

MB = 1024 * 1024
# one memtable's size (Faust's default is 64 MB, for each of 32 databases or more)
WRITE_BUFFER_BYTES = 4 * MB


@cache
def shared_cache(cache_mb: int) -> Cache:
    """The block cache every partition database of this process shares."""
    return Cache(cache_mb * MB)


def within(store: rocksdb.Store, cache_mb: int) -> None:
    """Open each of `store`'s partition databases with the shared cache and small memtables."""
    faust_options = store.rocksdb_options
    faust_as_options = faust_options.as_options

    def as_options() -> Options:
        options = faust_as_options()  # Faust's, but for the memtable size and the cache
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        table = BlockBasedOptions()
        table.set_bloom_filter(faust_options.bloom_filter_size, True)
        table.set_index_type(BlockBasedIndexType.binary_search())
        table.set_block_cache(shared_cache(cache_mb))
        options.set_block_based_table_factory(table)
        return options

    faust_options.as_options = as_options  # type: ignore[method-assign]


def without_wal(store: rocksdb.Store) -> None:
    """Each of `store`'s partition databases (as Faust opens it) writing without the log."""
    options = WriteOptions()
    options.disable_wal = True
    open_partition = store._open_for_partition

    def opened(partition: int):
        db = open_partition(partition)
        db.set_write_options(options)
        return db

    store._open_for_partition = opened  # type: ignore[method-assign]


class LedgerTable(DurableTable):
    """The worker's table: changelog writes the commit barrier waits for, a store without a
    write-ahead log, its databases sharing one cache of `store_cache_mb` (Faust's per-database
    defaults when None)."""

    def __init__(self, *args, store_cache_mb: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.store_cache_mb = store_cache_mb

    def _new_store_by_url(self, url):
        store = super()._new_store_by_url(url)
        if not isinstance(store, rocksdb.Store) or not store.use_rocksdict:  # memory:// (tests)
            return store
        if self.store_cache_mb is not None:
            within(store, self.store_cache_mb)
        without_wal(store)
        return store
