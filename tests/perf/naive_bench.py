"""The worker baseline of `make bench`: a backlog of purchases through tests/perf/naive_worker.py
on the bench stack's broker and Postgres: records/s and CPU per record of the naive worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from procstat import cpu_seconds

HERE = Path(__file__).resolve().parent


async def _create_topics(bootstrap: str) -> None:
    """The broker does not create topics on first use; the naive worker's, as Faust would."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for name in ("naive.purchases", "naive.awards"):
            try:
                await admin.create_topics([NewTopic(name, 8, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def _produce(bootstrap: str, first: int, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for i in range(first, first + n):
            customer = f"c{i * 7919 % 2000}"
            value = {"order_id": f"N{i}", "customer": customer, "amount": 1234.5}
            await producer.send("naive.purchases", orjson.dumps(value), key=customer.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM naive_awards")
    finally:
        await conn.close()


async def _wait_rows(dsn: str, n: int, deadline: float, proc) -> int:
    done = 0
    while time.perf_counter() < deadline and proc.poll() is None:
        done = await _rows(dsn)
        if done >= n:
            break
        await asyncio.sleep(0.1)
    return done


async def naive_worker(bootstrap: str, dsn: str, data_dir: Path, n: int, timeout_s: float):
    """The naive worker, warmed up with 200 purchases, then `n` more as fast as it goes:
    records/s from the first of them sent to the last in Postgres, and CPU per record."""
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS naive_awards (order_id text, customer text, points int,"
        " balance bigint)"
    )
    await conn.execute("TRUNCATE naive_awards")
    await conn.close()
    await _create_topics(bootstrap)
    log = open(data_dir / "naive-worker.log", "wb")  # noqa: ASYNC230 - the child's log
    env = {**os.environ, "KAFKA": bootstrap, "DSN": dsn, "DATADIR": str(data_dir / "naive")}

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(HERE / "naive_worker.py"), "worker", "-l", "warn"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    proc = start()
    try:
        warm = 200
        await _produce(bootstrap, 0, warm)
        ready = await _wait_rows(dsn, warm, time.perf_counter() + timeout_s, proc)
        if ready < warm and proc.poll() is not None:
            # Faust sometimes starts before the broker's metadata has the new topics' partitions
            # ("topics must have the same number of partitions") and exits: once more
            proc = start()
            ready = await _wait_rows(dsn, warm, time.perf_counter() + timeout_s, proc)
        if ready < warm:
            raise RuntimeError(f"the naive worker did not start: see {log.name}")
        started, cpu0 = time.perf_counter(), cpu_seconds([proc.pid])
        await _produce(bootstrap, warm, n)
        done = await _wait_rows(dsn, warm + n, started + timeout_s, proc) - warm
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds([proc.pid]) - cpu0
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return {
        "records": n,
        "done": done,
        "seconds": round(elapsed, 2),
        "records_per_s": round(done / elapsed, 1) if elapsed else None,
        "cpu_ms_per_record": round(1000 * cpu / max(done, 1), 3),
    }
