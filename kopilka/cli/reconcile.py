"""`kopilka reconcile`: does the Postgres read model hold the engine's balances?

The engine's state is the Faust table "ledger-state" (streams/app.py): "c|tenant:customer" ->
CustomerState JSON, whose balance is the sum of its lots' remaining points (schemas/rules/state.py).
We read it from the table's compacted changelog topic (`<worker_id>-ledger-state-changelog`)
with a group-less consumer, from the beginning up to the end offsets taken at the start, and
compare each customer's balance with `balances` in Postgres. A customer is drifting when the two
differ (a missing side counts as 0 points). While the pipeline is busy the read model trails
the engine by moments, so drift is re-checked for up to `--settle` seconds before it is reported.

`--repair` rewrites the Postgres copy of each drifting customer from `loyalty.events`: in one
transaction its ledger entries, lots and balance are deleted and every event of the customer
(the topic's key is tenant:customer) is applied again through the Postgres sink's own code
(`sinks.postgres.ReadModelSink`). Best run while the shop is quiet: an event the sink writes for
that customer during the repair can be undone by it (the check after the repair would show it).

Exit status: 0 no drift (after the repair, with --repair), 1 drift, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer

from kopilka.core import db, topics
from kopilka.core.kafka import assign_whole_topic
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings
from schemas.rules.state import CustomerState

log = get_logger(__name__)

CustomerKey = tuple[str, str]  # (tenant_id, customer_id)


@dataclass(frozen=True)
class Balance:
    balance: int
    seq: int


@dataclass(frozen=True)
class Drift:
    tenant_id: str
    customer_id: str
    engine_balance: int | None  # None: the engine has no such customer
    postgres_balance: int | None  # None: no row in Postgres
    difference: int  # postgres - engine
    engine_seq: int | None
    postgres_seq: int | None


def changelog_topic(settings: Settings) -> str:
    return topics.ledger_changelog(settings.worker_id).name


def _text(raw: bytes | None) -> str | None:
    """A changelog key or value: Faust JSON-encodes str keys and values; take raw text too."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")
    return value if isinstance(value, str) else raw.decode("utf-8", "replace")


def engine_balances(
    records: Iterable[tuple[bytes | None, bytes | None]], tenant_id: str | None = None
) -> dict[CustomerKey, Balance]:
    """Changelog records (key, value), oldest first -> each customer's latest balance.
    A record with no value (a tombstone) deletes the customer."""
    out: dict[CustomerKey, Balance] = {}
    for raw_key, raw_value in records:
        key = _text(raw_key)
        if key is None or not key.startswith("c|"):
            continue  # order entries ("o|...") carry no balance
        tenant, sep, customer = key[2:].partition(":")
        if not sep or (tenant_id is not None and tenant != tenant_id):
            continue
        value = _text(raw_value)
        if value is None:
            out.pop((tenant, customer), None)
            continue
        state = CustomerState.from_bytes(value.encode())
        out[(tenant, customer)] = Balance(state.balance(), state.seq)
    return out


def compare(
    engine: dict[CustomerKey, Balance], postgres: dict[CustomerKey, Balance]
) -> list[Drift]:
    drifts = []
    for key in sorted(engine.keys() | postgres.keys()):
        e, p = engine.get(key), postgres.get(key)
        e_points, p_points = e.balance if e else 0, p.balance if p else 0
        if e_points != p_points:
            drifts.append(
                Drift(
                    key[0],
                    key[1],
                    e.balance if e else None,
                    p.balance if p else None,
                    p_points - e_points,
                    e.seq if e else None,
                    p.seq if p else None,
                )
            )
    return drifts


def summary(
    engine: dict[CustomerKey, Balance], postgres: dict[CustomerKey, Balance], drifts: list[Drift]
) -> dict:
    tenants: dict[str, dict] = {}
    for side, found in (("engine_total", engine), ("postgres_total", postgres)):
        for (tenant, _), b in found.items():
            t = tenants.setdefault(tenant, {"engine_total": 0, "postgres_total": 0, "drifting": 0})
            t[side] += b.balance
    for d in drifts:
        tenants[d.tenant_id]["drifting"] += 1
    return {
        "customers": len(engine.keys() | postgres.keys()),
        "drifting": len(drifts),
        "drift_points": sum(abs(d.difference) for d in drifts),
        "engine_total": sum(b.balance for b in engine.values()),
        "postgres_total": sum(b.balance for b in postgres.values()),
        "tenants": dict(sorted(tenants.items())),
        "drift": [asdict(d) for d in drifts],
    }


# ---------------------------------------------------------------------------------- reading
async def read_topic(settings: Settings, topic: str, keep=lambda key: True):
    """Every record (key, value) of `topic` with a key `keep` accepts, up to the end offsets
    at the start, in offset order per partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_list,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=max(52428800, settings.max_record_bytes + 1024 * 1024),
        max_partition_fetch_bytes=settings.max_record_bytes + 1024 * 1024,
        client_id=f"{settings.worker_id}-reconcile",
    )
    await consumer.start()
    records: list[tuple[bytes | None, bytes | None]] = []
    try:
        if topic not in await consumer.topics():
            return records
        tps = await assign_whole_topic(consumer, topic)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
            if not pending:
                break
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, msgs in batches.items():
                records.extend((m.key, m.value) for m in msgs if m.offset < end[tp] and keep(m.key))
    finally:
        await consumer.stop()
    return records


async def read_engine(settings: Settings, tenant_id: str | None) -> dict[CustomerKey, Balance]:
    return engine_balances(await read_topic(settings, changelog_topic(settings)), tenant_id)


async def read_postgres(pool: asyncpg.Pool, tenant_id: str | None) -> dict[CustomerKey, Balance]:
    sql = "SELECT tenant_id, customer_id, balance, seq FROM balances"
    rows = await (
        pool.fetch(sql + " WHERE tenant_id = $1", uuid.UUID(tenant_id))
        if tenant_id
        else pool.fetch(sql)
    )
    return {
        (str(r["tenant_id"]), str(r["customer_id"])): Balance(int(r["balance"]), int(r["seq"]))
        for r in rows
    }


async def check(settings: Settings, pool: asyncpg.Pool, tenant_id: str | None, settle_s: float):
    """(engine, postgres, drifts), re-read until no drift or `settle_s` has passed."""
    deadline = time.monotonic() + settle_s
    while True:
        engine = await read_engine(settings, tenant_id)
        postgres = await read_postgres(pool, tenant_id)
        drifts = compare(engine, postgres)
        if not drifts or time.monotonic() >= deadline:
            return engine, postgres, drifts
        await asyncio.sleep(1.0)


# ---------------------------------------------------------------------------------- repair
class _Held:
    """A pool-like wrapper of one connection, so that the sink's flush runs inside our
    transaction (its own `conn.transaction()` becomes a savepoint)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    def acquire(self):
        return self

    async def __aenter__(self) -> asyncpg.Connection:
        return self.conn

    async def __aexit__(self, *exc) -> None:
        return None


async def repair(settings: Settings, pool: asyncpg.Pool, customers: Iterable[CustomerKey]) -> int:
    """Rewrite these customers' ledger, lots and balance in Postgres from loyalty.events."""
    from sinks.postgres import ReadModelSink

    wanted = {f"{t}:{c}".encode(): (t, c) for t, c in customers}
    if not wanted:
        return 0
    by_customer: dict[CustomerKey, list[bytes]] = {key: [] for key in wanted.values()}
    for key, value in await read_topic(settings, topics.EVENTS.name, lambda k: k in wanted):
        if value is not None:
            by_customer[wanted[key]].append(value)
    for (tenant, customer), raws in by_customer.items():
        t, c = uuid.UUID(tenant), uuid.UUID(customer)
        sink = ReadModelSink()
        for raw in raws:
            sink.add(raw)
        async with pool.acquire() as conn, conn.transaction():
            for table in ("ledger_entries", "lots", "balances"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE tenant_id = $1 AND customer_id = $2",  # noqa: S608
                    t,
                    c,
                )
            await sink.flush(_Held(conn))
        log.info("reconcile_repaired", tenant_id=tenant, customer_id=customer, events=len(raws))
    return len(by_customer)


# ---------------------------------------------------------------------------------- CLI
def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconcile", help="compare the engine's balances with Postgres")
    p.add_argument("--tenant", type=_tenant, help="only this tenant's customers")
    p.add_argument(
        "--repair", action="store_true", help="rewrite drifting customers from loyalty.events"
    )
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument(
        "--settle",
        type=float,
        default=5.0,
        metavar="S",
        help="re-check drift for up to S seconds (the read model trails a busy engine)",
    )


def _tenant(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError("a tenant id (uuid)") from exc


async def run(settings: Settings, tenant_id: str | None, *, repair_: bool, settle_s: float):
    dsn = settings.database_url.get_secret_value()
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    try:
        engine, postgres, drifts = await check(settings, pool, tenant_id, settle_s)
        result = summary(engine, postgres, drifts)
        if repair_ and drifts:
            result["repaired"] = await repair(
                settings, pool, [(d.tenant_id, d.customer_id) for d in drifts]
            )
            engine, postgres, after = await check(settings, pool, tenant_id, settle_s)
            result["after_repair"] = summary(engine, postgres, after)
            return (1 if after else 0), result
        return (1 if drifts else 0), result
    finally:
        await pool.close()


def table(result: dict) -> str:
    lines = []
    if result["drift"]:
        lines.append(
            f"{'tenant':36}  {'customer':36}  {'engine':>10}  {'postgres':>10}  {'diff':>8}"
        )
        for d in result["drift"]:
            e = "-" if d["engine_balance"] is None else d["engine_balance"]
            p = "-" if d["postgres_balance"] is None else d["postgres_balance"]
            who = f"{d['tenant_id']:36}  {d['customer_id']:36}"
            lines.append(f"{who}  {e:>10}  {p:>10}  {d['difference']:>+8}")
    lines.append(
        f"customers {result['customers']}, drifting {result['drifting']}, drift "
        f"{result['drift_points']} points; engine total {result['engine_total']}, "
        f"postgres total {result['postgres_total']}"
    )
    return "\n".join(lines)


def main(args: argparse.Namespace, settings: Settings) -> int:
    status, result = asyncio.run(
        run(settings, args.tenant, repair_=args.repair, settle_s=args.settle)
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return status
    print(table(result))
    if "after_repair" in result:
        print(f"repaired {result['repaired']} customer(s); after the repair:")
        print(table(result["after_repair"]))
    return status
