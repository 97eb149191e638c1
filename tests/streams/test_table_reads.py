"""streams.table_reads: a read of a RocksDB-backed table in one look-up gives what Faust's
`table.get` gives, in the partition of the record being processed."""

from __future__ import annotations

import faust

from streams.metrics import TABLE_OPS
from streams.table_reads import reader


def test_a_read_gives_what_table_get_gives_in_the_record_s_partition(tmp_path, processing):
    app = faust.App("table-reads", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("state", key_type=str, value_type=bytes, partitions=4)
    read = reader(table)
    assert read is not table.get  # the store is read straight
    processing(2)
    table.data["c|t:1"] = b'{"v":1}'
    assert read("c|t:1") == table.get("c|t:1") == b'{"v":1}'
    assert read("c|t:unknown") is None and table.get("c|t:unknown") is None
    processing(3)  # another partition's database does not hold it
    assert read("c|t:1") is None and table.get("c|t:1") is None
    assert TABLE_OPS[("state", "get")] >= 3  # counted like Faust's own reads


def test_a_table_without_a_serialized_store_is_read_with_get():
    plain = {"c|t:1": b"x"}
    assert reader(plain)("c|t:1") == b"x" and reader(plain)("nope") is None
