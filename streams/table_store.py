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

Memory. Faust opens each partition's database with RocksDB options of its own: 64 MB memtables
(up to three of them) and a 2 GB block cache, each per database, and a worker holds one database
per partition it processes (32 by default). Nothing bounded the sum: under a long load the
worker grew to about 1 GB, mostly memtables, which without a log are flushed only when full.
Here every database of the process shares one block cache of `memory_mb`
(`worker_store_memory_mb`), and one write buffer manager charges every memtable to that cache
and flushes the one being written once they all hold half of it; index and filter blocks are
charged to the cache too. RocksDB treats the limit as a soft one: it may overshoot it briefly
while a flush is under way.
"""

from __future__ import annotations

from functools import cache

from faust.stores import rocksdb
from faust.types import StoreT
from rocksdict import (
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    Options,
    WriteBufferManager,
    WriteOptions,
)

from streams.changelog_barrier import DurableTable

MB = 1024 * 1024
# one memtable's size: small, as 32 databases share the budget (Faust's default is 64 MB)
WRITE_BUFFER_BYTES = 4 * MB


@cache
def shared_memory(memory_mb: int) -> tuple[Cache, WriteBufferManager]:
    """The block cache and the write buffer manager every database of this process shares."""
    block_cache = Cache(memory_mb * MB)
    memtables = WriteBufferManager.new_write_buffer_manager_with_cache(
        memory_mb * MB // 2, False, block_cache
    )
    return block_cache, memtables


def within(store: rocksdb.Store, memory_mb: int) -> None:
    """Open each of `store`'s partition databases with the process's shared memory budget."""
    block_cache, memtables = shared_memory(memory_mb)
    faust_options = store.rocksdb_options
    faust_as_options = faust_options.as_options

    def as_options() -> Options:
        options = faust_as_options()
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        options.set_write_buffer_manager(memtables)
        table = BlockBasedOptions()
        table.set_bloom_filter(faust_options.bloom_filter_size, True)
        table.set_index_type(BlockBasedIndexType.binary_search())
        table.set_block_cache(block_cache)
        table.set_cache_index_and_filter_blocks(True)
        options.set_block_based_table_factory(table)
        return options

    faust_options.as_options = as_options  # type: ignore[method-assign]


def _rocksdict(store: StoreT) -> bool:
    return isinstance(store, rocksdb.Store) and store.use_rocksdict  # not memory:// (tests)


def without_wal(store: StoreT) -> StoreT:
    """`store`, each partition's database (as Faust opens it) writing without the log."""
    if not _rocksdict(store):
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
    write-ahead log, within `store_memory_mb` (Faust's per-database defaults when None)."""

    def __init__(self, *args, store_memory_mb: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.store_memory_mb = store_memory_mb

    def _new_store_by_url(self, url):
        store = super()._new_store_by_url(url)
        if self.store_memory_mb is not None and _rocksdict(store):
            within(store, self.store_memory_mb)
        return without_wal(store)
