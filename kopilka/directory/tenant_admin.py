"""Tenant administration shared by the CLI and the admin HTTP API: create, show, update rules.

Every change is written to Postgres first (the source of truth) and then published to the
compacted topic `tenants.rules`, from which every worker reads. If the publish fails, the change
stands in Postgres and the caller is told; the next start of the stack (or `kopilka tenants
publish-rules`) re-publishes every tenant, and workers fall back to Postgres for a tenant they
have not seen on the topic.
"""

from __future__ import annotations

import asyncpg
from aiokafka import AIOKafkaProducer

from kopilka.core.settings import Settings
from kopilka.directory import rules_feed
from kopilka.directory.tenants import NewTenant, Tenant, create_tenant, tenant_by_id, update_rules
from schemas.tenant_rules import TenantRules


def tenant_view(tenant: Tenant) -> dict:
    return {
        "tenant_id": tenant.id,
        "name": tenant.name,
        "active": tenant.active,
        "rules_revision": tenant.rules_revision,
        "rules": tenant.rules.model_dump(mode="json"),
        "edge": tenant.edge(),
    }


def new_tenant_view(new: NewTenant, settings: Settings) -> dict:
    return {
        **tenant_view(new.tenant),
        "webhook_secret": new.webhook_secret,
        "webhook_url": settings.webhook_base_url + new.webhook_secret,
        "api_key": new.api_key,
        "signing_secret": new.signing_secret,
        "signature_mode": new.tenant.signature_mode,
        "note": "the webhook secret, API key and signing secret are shown only this once; "
        "store them now",
    }


async def create(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, name: str, rules: TenantRules
) -> NewTenant:
    new = await create_tenant(pool, name=name, rules=rules)
    await rules_feed.publish(producer, new.tenant)
    return new


async def update(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, tenant_id: str, changes: dict
) -> Tenant | None:
    """Validate and store the changed rules, then publish them. None: no such tenant."""
    tenant = await update_rules(pool, tenant_id, changes)
    if tenant is not None:
        await rules_feed.publish(producer, tenant)
    return tenant


async def show(pool: asyncpg.Pool, tenant_id: str) -> Tenant | None:
    return await tenant_by_id(pool, tenant_id)
