"""After a fault: wait for the pipeline to settle, then count what was lost, doubled or drifted.

The truth it checks against:
- what the shop was promised: every action answered 202 (`load.Shop`);
- what the broker stored: the tenant's records on `webhooks.raw`, in log order (a request that
  was answered 503 may still have been stored: such "ghosts" are inputs like any other);
- what the engine must have made of them: `model.expected`, the pure rules core fed those inputs.

Figures:
- lost: accepted actions whose body the broker does not hold, or for which an event the core
  emits is missing from Postgres's `ledger_entries`;
- doubled: events (in Postgres or on `loyalty.events`) the core did not emit but that are about
  the same thing as one it did (a second award for an order, a second entry for a spend, a
  refund, a registration);
- drift: discrepancies: a customer whose Postgres balance differs from the sum of their ledger
  entries, or whose Postgres balance or lifetime spend, or read-API balance, differs from the
  core's; an event about something the core never did; an event the core did emit but with
  other points.
- recover_s: from the end of the fault until Postgres holds every expected event.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer
from load import Shop
from model import Expected, Position, event_key, expected

from kopilka.core.kafka import assign_whole_topic
from kopilka.devstack.diagnosis import group_lag
from schemas.commands import batch_items
from schemas.messages import RawEnvelope
from schemas.routing import tenant_of
from schemas.tenant_rules import TenantRules


async def read_topic(bootstrap: list[str], topic: str, timeout_s: float = 60.0) -> list:
    """Every record of `topic`, partition by partition in offset order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = await assign_whole_topic(consumer, topic)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: dict = {tp: [] for tp in tps}
        deadline = time.monotonic() + timeout_s
        left = set(tps)
        while left:
            for tp in list(left):
                if await consumer.position(tp) >= end[tp]:
                    left.discard(tp)
            if not left:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s}s")
            batch = await consumer.getmany(*left, timeout_ms=500)
            for tp, got in batch.items():
                records[tp].extend(r for r in got if r.offset < end[tp])
        return [r for tp in tps for r in records[tp]]
    finally:
        await consumer.stop()


@dataclass
class Snapshot:
    ids: dict[str, str]  # email -> customer id
    entries: dict[str, dict]  # event_id -> ledger row
    balances: dict[str, dict]  # customer id -> balances row


@dataclass
class Report:
    scenario: str
    accepted: int
    lost: int
    doubled: int
    drift: int
    recover_s: float | None
    details: dict = field(default_factory=dict)

    def line(self) -> str:
        recover = f"{self.recover_s:.1f}" if self.recover_s is not None else "never"
        return (
            f"{self.scenario} | {self.accepted} | {self.lost} | {self.doubled} | "
            f"{self.drift} | {recover}"
        )


class Checker:
    def __init__(
        self,
        *,
        dsn: str,
        bootstrap: list[str],
        base_url: str,
        tenant: dict,
        rules: TenantRules,
        group: str = "kopilka",
    ) -> None:
        self.dsn, self.bootstrap, self.base_url = dsn, bootstrap, base_url
        self.tenant, self.rules, self.group = tenant, rules, group
        self.tenant_id = tenant["tenant_id"]
        self.positions: dict[str, str] = {}  # event id -> "raw <partition>@<offset>"
        self.histories: dict[str, list[str]] = {}  # customer id -> their commands, in log order

    async def stored_inputs(self) -> list[RawEnvelope]:
        records = await read_topic(self.bootstrap, "webhooks.raw")
        stored = []
        for r in records:
            if tenant_of(r.key) == self.tenant_id:
                env = RawEnvelope.from_bytes(r.value)
                self.positions[env.event_id] = f"raw {r.partition}@{r.offset}"
                stored.append(env)
        # One shop's requests are spread over the partitions (schemas.routing); each customer's
        # follow one another (the load sends them one by one), so arrival order is their order.
        return sorted(stored, key=lambda env: (env.received_at, env.event_id))

    async def engine_events(self) -> list[dict]:
        records = await read_topic(self.bootstrap, "loyalty.events")
        out = []
        for r in records:
            event = json.loads(r.value)
            if event.get("tenant_id") == self.tenant_id:
                out.append(event)
        return out

    async def command_log(self) -> tuple[set[str], dict[str, Position]]:
        """The tenant's commands on loyalty.commands: the request ids with at least one (where
        a loss happened), and where each command id first landed (model.Model's positions).
        Each customer's commands, as the ledger saw them, are kept for the report."""
        records = await read_topic(self.bootstrap, "loyalty.commands")
        requests: set[str] = set()
        positions: dict[str, Position] = {}
        self.histories = {}
        for r in records:
            items = batch_items(r.value)
            for index, cmd in enumerate([json.loads(r.value)] if items is None else items):
                if cmd.get("tenant_id") != self.tenant_id:
                    continue
                if cmd.get("request_id"):
                    requests.add(cmd["request_id"])
                positions.setdefault(cmd.get("command_id"), (r.partition, r.offset, index))
                about = cmd.get("refund_id") or cmd.get("order_id") or cmd.get("referee_id") or ""
                self.histories.setdefault(cmd.get("customer", {}).get("id"), []).append(
                    f"{r.partition}@{r.offset}.{index} {cmd.get('type')}"
                    f" {about.rsplit('-', 1)[-1]} {cmd.get('command_id', '')[:8]}"
                )
        return requests, positions

    async def snapshot(self, conn: asyncpg.Connection) -> Snapshot:
        tenant = uuid.UUID(self.tenant_id)
        ids = await conn.fetch(
            "SELECT value, customer_id FROM customer_identities"
            " WHERE tenant_id = $1 AND kind = 'email'",
            tenant,
        )
        entries = await conn.fetch(
            "SELECT event_id, customer_id, type, order_id, delta, event FROM ledger_entries"
            " WHERE tenant_id = $1",
            tenant,
        )
        balances = await conn.fetch(
            "SELECT customer_id, balance, lifetime_spend, level, seq FROM balances"
            " WHERE tenant_id = $1",
            tenant,
        )
        return Snapshot(
            {r["value"]: str(r["customer_id"]) for r in ids},
            {str(r["event_id"]): dict(r) for r in entries},
            {str(r["customer_id"]): dict(r) for r in balances},
        )

    async def wait_settled(
        self, stored: list[RawEnvelope], timeout_s: float, idle_s: float = 20.0
    ) -> tuple[float | None, Snapshot, Expected]:
        """Poll Postgres until it holds every expected event and balance: (when, last view).
        (None, ...) after `timeout_s`, or sooner once the pipeline is idle without having
        settled: the workers have committed everything and Postgres has not changed for
        `idle_s` (waiting longer would change nothing)."""
        conn = await _connect(self.dsn, timeout_s)
        try:
            deadline = time.monotonic() + timeout_s
            models: dict[tuple, Expected] = {}
            last, changed_at = None, time.monotonic()
            positions: dict[str, Position] = {}
            while True:
                snap = await self.snapshot(conn)
                view = (len(snap.entries), sorted((k, r["seq"]) for k, r in snap.balances.items()))
                if view != last:  # the engine moved on: where its commands landed too
                    _, positions = await self.command_log()
                # the core's answer changes only with the customer ids and the commands' places
                key = (frozenset(snap.ids.items()), len(positions))
                if key not in models:
                    models.clear()
                    models[key] = expected(self.tenant_id, self.rules, snap.ids, stored, positions)
                want = models[key]
                if not (set(want.events) - set(snap.entries)) and not self._balance_drift(
                    snap, want
                ):
                    return time.monotonic(), snap, want
                now = time.monotonic()
                if now > deadline:
                    return None, snap, want
                if view != last:
                    last, changed_at = view, now
                elif now - changed_at > idle_s:
                    if not await group_lag(self.bootstrap, self.group):
                        return None, snap, want
                    changed_at = now
                await asyncio.sleep(0.5)
        finally:
            await conn.close()

    @staticmethod
    def _short(want: Expected) -> set[str]:
        return {customer[:8] for customer in want.states}

    @staticmethod
    def _balance_drift(snap: Snapshot, want: Expected) -> list[str]:
        """Customers whose Postgres balance disagrees with their entries or with the core."""
        sums: Counter = Counter()
        for row in snap.entries.values():
            sums[str(row["customer_id"])] += row["delta"]
        drift = []
        for customer, state in want.states.items():
            row = snap.balances.get(customer)
            pg = row["balance"] if row else 0
            pg_lifetime = row["lifetime_spend"] if row else Decimal(0)
            if pg != sums[customer]:
                drift.append(f"{customer}: balance {pg} != sum of its entries {sums[customer]}")
            if pg != state.balance() or pg_lifetime != state.lifetime_spend:
                drift.append(
                    f"{customer}: postgres {pg} (lifetime {pg_lifetime}) != core "
                    f"{state.balance()} (lifetime {state.lifetime_spend})"
                )
        return drift

    async def read_api_drift(self, want: Expected, ids: dict[str, str]) -> list[str]:
        """The read API's balance for every customer the core knows, against the core's."""
        emails = {customer: email for email, customer in ids.items()}
        headers = {"Authorization": f"Bearer {self.tenant['api_key']}"}
        drift: list[str] = []
        limit = asyncio.Semaphore(8)

        async def one(session: aiohttp.ClientSession, customer: str, balance: int) -> None:
            email = emails.get(customer)
            if email is None:
                drift.append(f"{customer}: no email in postgres")
                return
            async with (
                limit,
                session.get(
                    f"{self.base_url}/api/v1/customers", params={"email": email}, headers=headers
                ) as resp,
            ):
                body = await resp.json(content_type=None)
            total = body.get("balance", {}).get("total") if resp.status == 200 else None
            if total != balance:
                drift.append(f"{email}: read API {resp.status} {total} != core {balance}")

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            await asyncio.gather(
                *(one(session, c, s.balance()) for c, s in want.states.items() if s.seq)
            )
        return drift

    async def check(
        self, scenario: str, shop: Shop, fault_end: float, settle_timeout_s: float = 90.0
    ) -> Report:
        stored = await self.stored_inputs()
        settled_at, _, _ = await self.wait_settled(stored, settle_timeout_s)
        await asyncio.sleep(2.0)  # anything late (a replay writing twice) shows up by now
        stored = await self.stored_inputs()
        _, snap, want = await self.wait_settled(stored, 0)
        engine = await self.engine_events()
        lag = await group_lag(self.bootstrap, self.group)

        stored_bodies = {env.body for env in stored}
        accepted = shop.accepted()
        on_topic = {e["event_id"] for e in engine}
        commanded, _ = await self.command_log()
        lost = []
        for action in accepted:
            if action.body not in stored_bodies:
                lost.append(f"#{action.n} {action.kind} {action.order_id}: not on webhooks.raw")
                continue
            missing = want.by_body[action.body] - set(snap.entries)
            if missing:
                # where it went missing: emitted on loyalty.events (then the sink lost it) or not
                types = sorted(
                    want.events[e]["type"] + ("@events" if e in on_topic else "") for e in missing
                )
                stage = "command sent" if action.event_id in commanded else "no command"
                lost.append(
                    f"#{action.n} {action.kind} {action.order_id or action.email}: {types}"
                    f" ({stage}; {self.positions.get(action.event_id)} {action.event_id})"
                )

        keys = want.keys
        seen: dict[str, dict] = {e["event_id"]: e for e in engine}
        for event_id, row in snap.entries.items():
            seen.setdefault(
                event_id,
                row["event"] if isinstance(row["event"], dict) else json.loads(row["event"]),
            )
        unexpected = {i: e for i, e in seen.items() if i not in want.events}
        doubled = [
            f"{e['type']} {event_key(e)[2:]}" for e in unexpected.values() if event_key(e) in keys
        ]
        foreign = [
            f"{e['type']} {event_key(e)}" for e in unexpected.values() if event_key(e) not in keys
        ]
        altered = []
        for event_id, event in want.events.items():
            got = seen.get(event_id)
            if got is not None and (got["type"], got.get("points")) != (
                event["type"],
                event.get("points"),
            ):
                altered.append(
                    f"{event['type']} {event_key(event)[2:]}: engine {got['type']} "
                    f"{got.get('points')} points != core {event.get('points')}"
                )
        drift = self._balance_drift(snap, want) + foreign + altered
        # the commands of every customer something went wrong for, as their partition holds them
        suspects = {
            want.events[e]["customer"]["id"]
            for e in set(want.events) - set(snap.entries)
            if e in want.events
        } | {line.split(":", 1)[0] for line in drift if line[:8] in self._short(want)}
        drift += await self.read_api_drift(want, snap.ids)

        accepted_ids = {a.event_id for a in accepted}
        ghosts = [env.event_id for env in stored if env.event_id not in accepted_ids]
        report = Report(
            scenario,
            accepted=len(accepted),
            lost=len(lost),
            doubled=len(doubled),
            drift=len(drift),
            recover_s=None if settled_at is None else max(0.0, settled_at - fault_end),
            details={
                "actions": len(shop.actions),
                "statuses": dict(shop.statuses()),
                "refused_4xx": [f"#{a.n} {a.kind}: {a.refused}" for a in shop.actions if a.refused],
                "gave_up": [f"#{a.n} {a.kind}" for a in shop.actions if a.gave_up],
                "stored_not_accepted": len(ghosts),
                "uncommitted_by_workers": lag,
                "expected_events": len(want.events),
                "refused_by_model": want.refused,
                "lost": lost[:20],
                "doubled": doubled[:20],
                "drift": drift[:20],
                "command_logs": {c: self.histories.get(c, [])[-12:] for c in sorted(suspects)[:6]},
            },
        )
        return report


async def _connect(dsn: str, timeout_s: float) -> asyncpg.Connection:
    deadline = time.monotonic() + max(timeout_s, 30)
    while True:
        try:
            return await asyncpg.connect(dsn, timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
