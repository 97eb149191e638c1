"""The topic registry: every Kafka topic Kopilka reads or writes, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    doc: str
    compacted: bool = False


WEBHOOKS_RAW = TopicSpec("webhooks.raw", "tenant_id", "raw request bodies accepted by ingest")
WEBHOOKS_AUDIT = TopicSpec(
    "webhooks.audit", "tenant_id", "requests ingest refused (reason, no body), for the audit log"
)
WEBHOOKS_DEAD = TopicSpec(
    "webhooks.dead", "tenant_id", "accepted requests the normaliser could not turn into commands"
)
WEBHOOKS_DEFERRED = TopicSpec(
    "webhooks.deferred",
    "as webhooks.raw",
    "refunds that overtook their purchase, tried again until their order is claimed",
)
COMMANDS = TopicSpec("loyalty.commands", "tenant_id:customer_id", "canonical loyalty commands")
EVENTS = TopicSpec("loyalty.events", "tenant_id:customer_id", "public loyalty events (JSON)")
OUTCOMES = TopicSpec(
    "loyalty.outcomes", "request_id", "what became of each command, for `Prefer: wait` answers"
)
TENANT_RULES = TopicSpec(
    "tenants.rules", "tenant_id", "each tenant's current loyalty rules", compacted=True
)
DEAD_LETTERS = TopicSpec(
    "kopilka.dead-letters",
    "tenant_id",
    "records a stage could not apply, whole, with the reason (schemas.dead_letters)",
)
NOTIFICATIONS_TELEGRAM = TopicSpec(
    "notifications.telegram", "chat_id", "events a tenant's Telegram chat opted into (JSON)"
)

ALL = (
    WEBHOOKS_RAW,
    WEBHOOKS_AUDIT,
    WEBHOOKS_DEAD,
    WEBHOOKS_DEFERRED,
    COMMANDS,
    EVENTS,
    OUTCOMES,
    TENANT_RULES,
    NOTIFICATIONS_TELEGRAM,
    DEAD_LETTERS,
)
