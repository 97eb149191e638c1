"""The topic registry: every Kafka topic Kopilka reads or writes, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    doc: str
    compacted: bool = False
    partitions: int | None = None  # None: the deployment's KOPILKA_TOPIC_PARTITIONS


WEBHOOKS_RAW = TopicSpec("webhooks.raw", "tenant_id", "raw request bodies accepted by ingest")
WEBHOOKS_AUDIT = TopicSpec(
    "webhooks.audit",
    "tenant_id",
    "the audit log: ingest's refusals, one a record; the normaliser's acceptances, many a record",
)
WEBHOOKS_DEAD = TopicSpec(
    "webhooks.dead", "tenant_id", "accepted requests the normaliser could not turn into commands"
)
WEBHOOKS_DEFERRED = TopicSpec(
    "webhooks.deferred",
    "as webhooks.raw",
    "refunds that overtook their purchase, tried again until their order is claimed",
)
COMMANDS = TopicSpec(
    "loyalty.commands",
    "tenant_id:customer_id",
    "canonical loyalty commands: one a record, or a normalised batch's for one partition",
)
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

# The ledger's Faust table and its changelog, named as Faust names it: "<app id>-<table>-changelog".
LEDGER_TABLE = "ledger-state"


def ledger_changelog(worker_id: str) -> TopicSpec:
    """The ledger table's changelog. `kopilka.core.kafka.ensure_topics` creates it with Kopilka's
    topics, before any worker joins: created by Faust while the worker joined its group, a
    broker of a fresh cluster could still answer its metadata with no partitions, and Faust
    refused every table write until the metadata was refreshed."""
    return TopicSpec(
        f"{worker_id}-{LEDGER_TABLE}-changelog",
        "tenant_id:customer_id",
        "the ledger's state (StreamApp.state_table), one entry per customer and per order",
        compacted=True,
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


def leader_topic(worker_id: str) -> TopicSpec:
    """Faust's leader election topic (one partition; its owner runs the leader-only timers,
    e.g. the settlement sweep). Created up front for the same reason as the changelog: created
    by Faust while the worker joined, it could be missing from the first assignment, and then
    no worker was leader until the next rebalance."""
    return TopicSpec(
        f"{worker_id}-__assignor-__leader", "-", "Faust's leader election", partitions=1
    )


def created_up_front(worker_id: str) -> tuple[TopicSpec, ...]:
    """Every topic a deployment creates before any worker starts: Kopilka's, and Faust's
    internal ones (the ledger's changelog, the leader topic)."""
    return (*ALL, ledger_changelog(worker_id), leader_topic(worker_id))
