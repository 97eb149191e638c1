"""Tenant rules on Kafka: published to the compacted topic `tenants.rules`, read into a table.

Postgres (`tenant_rules`) is the source of truth; every change is published here, keyed by
tenant_id, with its revision. Each worker reads the whole topic into `RulesTable` at start (it is
compacted: one record per tenant) and follows it from then on, so a change reaches every worker
within a moment and applies to what is processed after it. A newer revision always wins, so a
re-publish of an older one changes nothing.
"""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from kopilka.core import topics
from kopilka.core.kafka import assign_whole_topic
from kopilka.core.logging import get_logger
from kopilka.core.settings import Settings
from kopilka.directory.tenants import Tenant, tenant_by_id
from schemas.tenant_rules import TenantRules

log = get_logger(__name__)


def rules_record(tenant: Tenant) -> bytes:
    return orjson.dumps(
        {
            "tenant_id": tenant.id,
            "revision": tenant.rules_revision,
            "active": tenant.active,
            "rules": tenant.rules.model_dump(mode="json"),
        }
    )


async def publish(producer: AIOKafkaProducer, tenant: Tenant) -> None:
    await producer.send_and_wait(
        topics.TENANT_RULES.name, rules_record(tenant), key=tenant.id.encode()
    )


async def publish_all(pool: asyncpg.Pool, producer: AIOKafkaProducer) -> int:
    """Re-publish every tenant's rules (start-up reconciliation; idempotent by revision)."""
    ids = [str(r["id"]) for r in await pool.fetch("SELECT id FROM tenants")]
    for tenant_id in ids:
        tenant = await tenant_by_id(pool, tenant_id)
        if tenant is not None:
            await publish(producer, tenant)
    return len(ids)


class RulesTable:
    """tenant_id -> (revision, active, rules), kept current from `tenants.rules`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._rules: dict[str, tuple[int, bool, TenantRules]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None

    def get(self, tenant_id: str) -> tuple[int, bool, TenantRules] | None:
        return self._rules.get(tenant_id)

    def apply(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            data = orjson.loads(value)
            revision = int(data["revision"])
            rules = TenantRules.model_validate(data["rules"])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("tenant_rules_unreadable", error=str(exc)[:200])
            return
        held = self._rules.get(data["tenant_id"])
        if held is None or held[0] <= revision:
            self._rules[data["tenant_id"]] = (revision, bool(data.get("active", True)), rules)

    async def start(self) -> None:
        """Read the topic to its end (so every known tenant is here), then keep following it."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_list,
            enable_auto_commit=False,
            group_id=None,
            client_id=f"{self._settings.worker_id}-rules",
        )
        await consumer.start()
        self._consumer = consumer
        tps = await assign_whole_topic(consumer, topics.TENANT_RULES.name)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while await self._behind(consumer, ends):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    self.apply(record.value)
        log.info("tenant_rules_loaded", tenants=len(self._rules))
        self._task = asyncio.create_task(self._follow())

    @staticmethod
    async def _behind(consumer: AIOKafkaConsumer, ends: dict) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return True
        return False

    async def _follow(self) -> None:
        async for record in self._consumer:
            self.apply(record.value)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()
