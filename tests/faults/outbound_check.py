"""What the dispatcher fault scenario demands of the outbound side, counted from what arrived.

- webhooks: every event of the shop on `loyalty.events` reached its endpoint at least once; all
  deliveries of one event carry one `webhook-id`, and no two events share one (a shop dedupes on
  it); every delivery is signed;
- Telegram: no message (one chat, one event) was posted twice. A message whose send was cut off
  by the crash is not sent again (its outcome is unknown: at most once); those are counted, and
  whether the Bot API did get them.

The truth for "every event" is the engine's output on `loyalty.events`; the ledger side of the
same scenario is the harness's checker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import asyncpg
from checker import Checker
from outside import BotApi, Endpoint

from sinks.telegram_notifier import UNKNOWN_OUTCOME


@dataclass
class Outbound:
    events: int = 0  # the shop's events the engine published
    delivered: int = 0  # of them, reached the endpoint
    redelivered: int = 0  # reached it more than once (a kill cut the first delivery off)
    missing: list[str] = field(default_factory=list)
    mixed_ids: list[str] = field(default_factory=list)  # one event, several webhook-ids
    shared_ids: list[str] = field(default_factory=list)  # one webhook-id, several events
    unsigned: int = 0
    messages: int = 0  # Telegram messages the fan-out queued for the shop's chats
    posted: int = 0  # of them, posted (at least once)
    posted_twice: list[str] = field(default_factory=list)
    unknown: int = 0  # not sent again after a crash cut their send off
    unknown_posted: int = 0  # of those, the Bot API had got anyway
    not_posted: list[str] = field(default_factory=list)  # neither posted nor unknown
    settled_at: float | None = None  # monotonic: when the last thing due first arrived

    def clean(self) -> bool:
        webhooks = self.missing or self.mixed_ids or self.shared_ids or self.unsigned
        return not (webhooks or self.posted_twice or self.not_posted)

    def line(self, scenario: str, fault_end: float | None = None) -> str:
        recover = "never"
        if self.settled_at is not None and fault_end is not None:
            recover = f"{max(0.0, self.settled_at - fault_end):.1f}"
        return (
            f"{scenario} (outbound) | recover_s {recover} |"
            f" webhooks: {self.delivered}/{self.events} events delivered,"
            f" {self.redelivered} redelivered, {len(self.mixed_ids)} with two webhook-ids |"
            f" telegram: {self.posted}/{self.messages} posted, {len(self.posted_twice)} twice,"
            f" {self.unknown} cut off by a kill ({self.unknown_posted} of them had arrived)"
        )


async def check_outbound(
    checker: Checker,
    dsn: str,
    tenant_id: str,
    endpoint: Endpoint,
    bot: BotApi,
    chats: dict[int, list[str]],
    timeout_s: float = 120.0,
) -> Outbound:
    """Wait until everything due went out (or `timeout_s`), then count."""
    events = {e["event_id"]: e for e in await checker.engine_events()}
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            arrived = {d.event_id for d in endpoint.deliveries}
            pending = await conn.fetchval(
                "SELECT count(*) FROM telegram_messages WHERE tenant_id = $1"
                " AND status = 'pending'",
                uuid.UUID(tenant_id),
            )
            if (set(events) <= arrived and not pending) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        outbox = await conn.fetch(
            "SELECT chat_id, event_id, status, last_error FROM telegram_messages"
            " WHERE tenant_id = $1",
            uuid.UUID(tenant_id),
        )
    finally:
        await conn.close()

    out = Outbound(events=len(events))
    ids_of: dict[str, set] = defaultdict(set)
    events_of: dict[str, set] = defaultdict(set)
    times: Counter = Counter()
    for d in endpoint.deliveries:
        if d.event_id not in events:
            continue
        ids_of[d.event_id].add(d.webhook_id)
        events_of[d.webhook_id].add(d.event_id)
        times[d.event_id] += 1
        out.unsigned += not d.signed
    firsts = {}
    for d in endpoint.deliveries:
        firsts.setdefault(d.event_id, d.at)
    for m in bot.messages:
        firsts.setdefault((m.chat_id, m.text.split(" ", 1)[0]), m.at)
    out.delivered = len(ids_of)
    out.redelivered = sum(1 for n in times.values() if n > 1)
    out.missing = [f"{events[e]['type']} {e}" for e in events if e not in ids_of]
    out.mixed_ids = [f"{e}: {sorted(map(str, ids))}" for e, ids in ids_of.items() if len(ids) > 1]
    out.shared_ids = [f"{w}: {sorted(es)}" for w, es in events_of.items() if len(es) > 1]

    posts = Counter(
        (m.chat_id, m.text.split(" ", 1)[0]) for m in bot.messages if m.chat_id in chats
    )
    out.messages = len(outbox)
    for row in outbox:
        key = (row["chat_id"], str(row["event_id"]))
        n = posts.get(key, 0)
        unknown = row["status"] == "failed" and UNKNOWN_OUTCOME in (row["last_error"] or "")
        out.posted += n > 0
        out.unknown += unknown
        out.unknown_posted += unknown and n > 0
        if n > 1:
            out.posted_twice.append(f"chat {key[0]} event {key[1]}: {n} times")
        elif n == 0 and not unknown:
            out.not_posted.append(f"chat {key[0]} event {key[1]}: {row['status']}")
    # every message the chats should get was queued (the fan-out's side of the promise)
    queued = {(r["chat_id"], str(r["event_id"])) for r in outbox}
    for event_id, event in events.items():
        for chat_id, types in chats.items():
            if event["type"] in types and (chat_id, event_id) not in queued:
                out.not_posted.append(f"chat {chat_id} event {event_id}: never queued")
    if not out.missing and not out.not_posted:  # everything out: when the last of it arrived
        due = [firsts.get(e) for e in events]
        due += [firsts.get((r["chat_id"], str(r["event_id"]))) for r in outbox]
        out.settled_at = max((t for t in due if t is not None), default=None)
    return out
