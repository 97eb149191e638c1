"""Agent `normalize`: raw request bodies (webhooks.raw) -> canonical commands (loyalty.commands).

The body is parsed with the same parser the ingress used to validate it, identities are
normalised with the tenant's phone region, and the customer is found or created in the identity
directory. Command ids derive from the raw event id, so re-processing a raw record re-emits the
same commands. A body that cannot become a command goes to webhooks.dead with the reason.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kopilka.ids import derived_id
from kopilka.logging import get_logger
from kopilka.tenants import TenantDirectory
from schemas.identity import normalize_phone
from schemas.inbound import InboundError, parse_webhook
from schemas.messages import AuditRecord, PurchaseCommand, RawEnvelope, TenantRules
from streams.app import (
    app,
    commands,
    resources,
    settings,
    webhooks_audit,
    webhooks_dead,
    webhooks_raw,
)
from streams.customers import CustomerDirectory
from streams.retry import until_done

log = get_logger(__name__)


class Normalizer:
    def __init__(self) -> None:
        self._tenants: TenantDirectory | None = None
        self._customers: CustomerDirectory | None = None

    async def _setup(self) -> None:
        if self._tenants is None:
            pool = await resources.pool()
            self._tenants = TenantDirectory(pool, ttl_s=settings.tenant_cache_ttl_s)
            self._customers = CustomerDirectory(pool)

    async def commands_for(self, env: RawEnvelope) -> list[PurchaseCommand] | AuditRecord:
        """The commands one raw record yields, or the dead letter saying why it yields none."""
        await until_done(self._setup, "connect")
        tenant = await until_done(lambda: self._tenants.by_id(env.tenant_id), "tenant")
        if tenant is None:
            return self._dead(env, "unknown_tenant", None, "the tenant no longer exists")
        try:
            parsed = parse_webhook(
                env.body.encode("utf-8"), env.content_type, phone_region=tenant.phone_region
            )
        except InboundError as exc:
            return self._dead(env, exc.code, exc.field, exc.reason)
        rules = TenantRules.model_validate(tenant.rules())
        out = []
        for index, purchase in enumerate(parsed.purchases):
            try:  # the ingress checked it, but the tenant's region may have changed since
                phone = (
                    normalize_phone(purchase.phone, tenant.phone_region) if purchase.phone else None
                )
            except ValueError as exc:
                return self._dead(env, "invalid_field", "phone", str(exc))
            customer = await until_done(
                lambda p=purchase, ph=phone: self._customers.resolve(
                    tenant.id, email=p.email, phone=ph, name=p.name
                ),
                "customer",
            )
            out.append(
                PurchaseCommand(
                    command_id=derived_id(env.event_id, index),
                    source_event_id=env.event_id,
                    tenant_id=tenant.id,
                    customer=customer,
                    order_id=purchase.order_id,
                    amount=purchase.amount,
                    description=purchase.description,
                    occurred_at=env.received_at,
                    rules=rules,
                )
            )
        return out

    @staticmethod
    def _dead(env: RawEnvelope, code: str, field: str | None, reason: str) -> AuditRecord:
        return AuditRecord(
            event_id=env.event_id,
            tenant_id=env.tenant_id,
            received_at=env.received_at,
            status="dead",
            code=code,
            field=field,
            reason=reason,
            content_type=env.content_type,
            body_bytes=len(env.body),
        )


normalizer = Normalizer()


@app.agent(webhooks_raw)
async def normalize(stream):
    async for key, value in stream.items():
        try:
            env = RawEnvelope.from_bytes(value)
        except ValueError as exc:
            log.error("raw_unreadable", error=str(exc)[:200])
            await webhooks_dead.send(
                key=key,
                value=AuditRecord(
                    event_id=derived_id("unreadable", value),
                    tenant_id=(key or b"").decode(),
                    received_at=datetime.now(UTC),
                    status="dead",
                    code="unreadable_envelope",
                    reason=str(exc)[:500],
                ).to_bytes(),
            )
            continue
        result = await normalizer.commands_for(env)
        if isinstance(result, AuditRecord):
            log.warning(
                "webhook_dead",
                tenant_id=env.tenant_id,
                event_id=env.event_id,
                code=result.code,
                field=result.field,
            )
            await webhooks_dead.send(key=key, value=result.to_bytes())
            continue
        for cmd in result:
            await commands.send(key=cmd.key, value=cmd.to_bytes())
        await webhooks_audit.send(
            key=key,
            value=AuditRecord(
                event_id=env.event_id,
                tenant_id=env.tenant_id,
                received_at=env.received_at,
                status="accepted",
                http_status=202,
                code="accepted",
                reason=f"{len(result)} order(s)",
                content_type=env.content_type,
                body_bytes=len(env.body),
            ).to_bytes(),
        )
