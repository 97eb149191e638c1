"""The worker's baseline: the most naive Faust pipeline that does the same kind of work.

One agent reads purchases (JSON) from `naive.purchases`, keeps a running total per customer in
a table (Faust's default codecs, the RocksDB store as Kopilka's worker has), and sends one
award per purchase to `naive.awards`; a second agent takes awards in batches (`take()`) and
COPYs them into Postgres. No identities, no rules, no dead letters, no exactly-right replay:
what Faust + aiokafka + asyncpg cost per record on this machine and broker, so `make bench`
can state Kopilka's worker as a ratio of it.

    python tests/perf/naive_worker.py worker -l warn   (env: KAFKA, DSN, DATADIR)
"""

from __future__ import annotations

import os

import asyncpg
import faust
import orjson

app = faust.App(
    "kopilka-naive-baseline",
    broker=f"kafka://{os.environ['KAFKA']}",
    store=os.environ.get("NAIVE_STORE", "rocksdb://"),
    datadir=os.environ["DATADIR"],
    topic_partitions=8,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    producer_linger=0.005,
    web_enabled=False,
)
purchases = app.topic("naive.purchases", key_type=bytes, value_type=bytes, value_serializer="raw")
awards = app.topic("naive.awards", key_type=bytes, value_type=bytes, value_serializer="raw")
totals = app.Table("naive-totals", default=int, partitions=8)
_pool: list[asyncpg.Pool] = []


@app.agent(purchases)
async def award(stream):
    async for event in stream.events():
        purchase = orjson.loads(event.value)
        points = int(purchase["amount"] * 5 // 100)
        totals[purchase["customer"]] += points
        award = {
            "order_id": purchase["order_id"],
            "customer": purchase["customer"],
            "points": points,
            "balance": totals[purchase["customer"]],
        }
        await awards.send(key=event.key, value=orjson.dumps(award))


@app.agent(awards)
async def sink(stream):
    if not _pool:
        _pool.append(await asyncpg.create_pool(os.environ["DSN"], min_size=1, max_size=2))
    async for batch in stream.take(1000, within=0.05):
        rows = [orjson.loads(v) for v in batch]
        async with _pool[0].acquire() as conn:
            await conn.copy_records_to_table(
                "naive_awards",
                records=[(r["order_id"], r["customer"], r["points"], r["balance"]) for r in rows],
                columns=["order_id", "customer", "points", "balance"],
            )


if __name__ == "__main__":
    app.main()
