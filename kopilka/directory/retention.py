"""Retention: the tables that grow with traffic lose their finished rows after a while.

`kopilka prune [--dry-run]` runs it once; `kopilka dispatch` runs it every
`retention_interval_s`. Each table is pruned in batches of `retention_batch` rows, one short
transaction each, taking the oldest first and skipping rows another transaction holds, so
pruning never holds long locks and several dispatchers may prune at once.

What goes, and when (days are settings; 0 keeps a table forever):

  webhook_audit         retention_audit_days (30) after the request was received
  webhook_deliveries    succeeded: retention_deliveries_days (30) after they finished, with
                        their webhook_attempts; dead (still redrivable):
                        retention_dead_deliveries_days (90); pending ones never
  telegram_messages     sent, forbidden or failed: retention_telegram_days (30) after they were
                        queued; pending ones never
  identity_conflicts    resolved ones only (support gave the other customer's identities to the
                        chosen one, so the other owns neither any more):
                        retention_identity_conflicts_days (180) after they were seen
  order_claims          kept forever by default (retention_order_claims_days = 0). A claim is
                        what makes an order id belong to one customer: a refund finds its
                        customer by it, and a purchase replayed under another customer is refused
                        by it. When set, only settled claims are pruned, and none younger
                        than the refund window (order_refund_window_days) or the replay horizon.

The outboxes (deliveries, Telegram) are idempotent on their ids only while the rows exist: a
replay of loyalty.events / notifications.telegram would send again what was pruned. So none of
their rows younger than `replay_horizon_days` (Kafka's retention of those topics, 7 days by
default, plus a day) is pruned, whatever their own setting says.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from kopilka.core.db import DATABASE_DOWN
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class Rule:
    name: str  # what the output calls it
    table: str
    where: str  # rows of `t` that may go, given the cutoff $1
    days: Callable[[Settings], int]  # 0: keep forever
    replayable: bool = False  # an outbox: never younger than the replay horizon
    floor: Callable[[Settings], int] = lambda s: 0  # never younger than this many days


_RESOLVED = """t.seen_at < $1 AND NOT EXISTS (
    SELECT 1 FROM customer_identities i
     WHERE i.tenant_id = t.tenant_id AND i.customer_id = t.other_id
       AND ((i.kind = 'email' AND i.value = t.email)
         OR (i.kind = 'phone' AND i.value = t.phone)))"""

RULES = (
    Rule("webhook_audit", "webhook_audit", "t.received_at < $1", lambda s: s.retention_audit_days),
    Rule(
        "webhook_deliveries.succeeded",
        "webhook_deliveries",
        "t.status = 'succeeded' AND t.finished_at < $1",
        lambda s: s.retention_deliveries_days,
        replayable=True,
    ),
    Rule(
        "webhook_deliveries.dead",
        "webhook_deliveries",
        "t.status = 'dead' AND t.finished_at < $1",
        lambda s: s.retention_dead_deliveries_days,
        replayable=True,
    ),
    Rule(
        "telegram_messages",
        "telegram_messages",
        "t.status <> 'pending' AND t.created_at < $1",
        lambda s: s.retention_telegram_days,
        replayable=True,
    ),
    Rule(
        "identity_conflicts.resolved",
        "identity_conflicts",
        _RESOLVED,
        lambda s: s.retention_identity_conflicts_days,
    ),
    Rule(
        "order_claims",
        "order_claims",
        "t.settled_at IS NOT NULL AND t.claimed_at < $1",  # settled: streams/settlement.py
        lambda s: s.retention_order_claims_days,
        replayable=True,
        floor=lambda s: s.order_refund_window_days,
    ),
)


def effective_days(rule: Rule, settings: Settings) -> int:
    """The rule's days raised to its floors; 0 when the table is kept forever."""
    days = rule.days(settings)
    if days <= 0:
        return 0
    floors = [rule.floor(settings)] + ([settings.replay_horizon_days] if rule.replayable else [])
    return max(days, *floors)


def _delete_sql(rule: Rule) -> str:
    victims = (
        f"SELECT t.ctid FROM {rule.table} t WHERE {rule.where}"  # noqa: S608 - fixed names
        " LIMIT $2 FOR UPDATE SKIP LOCKED"
    )
    if rule.table == "webhook_deliveries":  # a delivery's attempts go with it
        return f"""
WITH v AS (SELECT t.id FROM webhook_deliveries t WHERE {rule.where}
            LIMIT $2 FOR UPDATE SKIP LOCKED),
     a AS (DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM v) RETURNING 1),
     d AS (DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM v) RETURNING 1)
SELECT (SELECT count(*) FROM d) AS rows, (SELECT count(*) FROM a) AS attempts"""  # noqa: S608
    return f"""
WITH d AS (DELETE FROM {rule.table} WHERE ctid = ANY(ARRAY({victims})) RETURNING 1)
SELECT count(*) AS rows, 0::bigint AS attempts FROM d"""  # noqa: S608


async def prune(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[dict]:
    """Prune every table once; what each rule deleted (or would delete)."""
    now = now or datetime.now(UTC)
    report = []
    for rule in RULES:
        days = effective_days(rule, settings)
        item: dict = {"table": rule.name, "days": days}
        if days == 0:
            report.append({**item, "kept": "forever"})
            continue
        cutoff = now - timedelta(days=days)
        item["cutoff"] = cutoff.isoformat()
        if dry_run:
            count = await pool.fetchval(
                f"SELECT count(*) FROM {rule.table} t WHERE {rule.where}",  # noqa: S608
                cutoff,
            )
            report.append({**item, "would_delete": count})
            continue
        started, deleted, attempts, batches = time.monotonic(), 0, 0, 0
        sql = _delete_sql(rule)
        while True:
            row = await pool.fetchrow(sql, cutoff, settings.retention_batch)
            deleted, attempts, batches = (
                deleted + row["rows"],
                attempts + row["attempts"],
                batches + 1,
            )
            if row["rows"] < settings.retention_batch:
                break
            await asyncio.sleep(0.01)  # let other work at the table between batches
        if rule.table == "webhook_deliveries":
            item["attempts_deleted"] = attempts
        item["deleted"] = deleted
        report.append(item)
        log.info(
            "retention_pruned",
            table=rule.name,
            deleted=deleted,
            **({"attempts_deleted": attempts} if rule.table == "webhook_deliveries" else {}),
            days=days,
            batches=batches,
            seconds=round(time.monotonic() - started, 3),
        )
    return report


async def run_periodically(pool: asyncpg.Pool, settings: Settings, stopping: asyncio.Event):
    """The dispatcher's pruning loop: once at start, then every `retention_interval_s`."""
    if settings.retention_interval_s <= 0:
        log.info("retention_off", reason="KOPILKA_RETENTION_INTERVAL_S is 0")
        return
    while not stopping.is_set():
        try:
            await prune(pool, settings)
        except DATABASE_DOWN as exc:
            log.warning("retention_failed", error=type(exc).__name__, detail=str(exc)[:200])
        try:
            await asyncio.wait_for(stopping.wait(), settings.retention_interval_s)
        except TimeoutError:
            pass


# ---------------------------------------------------------------------- the command line
def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="delete rows older than their retention (see settings)")
    p.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")


async def prune_command(settings: Settings, dry_run: bool) -> list[dict]:
    from kopilka.core import db

    dsn = settings.database_url.get_secret_value()
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        return await prune(pool, settings, dry_run=dry_run)
    finally:
        await pool.close()
