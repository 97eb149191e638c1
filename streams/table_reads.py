"""A table read in one store look-up: what the ledger reads on every command.

Faust's `Table.get(key)` goes through five layers of mapping methods, counts the read for its
sensors, and asks the store twice: `key in store` (a RocksDB get) and then `store[key]` (the
same get again). With two reads a command (the customer entry, the order entry) that was about
6 % of the worker's main thread under load (py-spy). `reader(table)` reads the serialized store
straight, as Faust's own `store[key]` does (the record being processed picks the partition's
database); a table with another store (the in-memory one of the unit tests) is read with
`table.get`. Each read still counts in kopilka_table_operations_total{op="get"}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from faust.stores.base import SerializedStore

from streams.metrics import count_table_op


def reader(table: Mapping[str, bytes]) -> Callable[[str], bytes | None]:
    """`table.get`, or the same answer in one look-up when the table keeps a serialized store."""
    store = getattr(table, "data", None)
    if not isinstance(store, SerializedStore):
        return table.get
    get, encode, decode = store._get, store._encode_key, store._decode_value
    name = getattr(table, "name", "")

    def read(key: str) -> bytes | None:
        count_table_op(name, "get")
        value = get(encode(key))
        return None if value is None else decode(value)

    return read
