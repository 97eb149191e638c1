"""What a raw request yields: canonical commands, refusals, or its dead letter.

The body is parsed with the same parser the ingress used to validate it, identities are
normalised with the tenant's phone region, the customer is found or created in the identity
directory, and the order is claimed for that customer. The tenant's rules come from the
`tenants.rules` table (a compacted topic) and are copied into each command. Command ids derive
from the raw event id, so re-processing a raw record yields the same commands. The agents that
feed it and send what it yields are in streams.normalize.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from kopilka.core.ids import derived_id
from kopilka.core.logging import get_logger
from kopilka.core.retry import until_done
from kopilka.core.settings import Settings
from kopilka.directory.customers import CustomerDirectory, ReferralRefused
from kopilka.directory.rules_feed import RulesTable
from kopilka.directory.tenants import TenantDirectory
from schemas.actions.purchase import PurchaseCommand
from schemas.errors import Refused, claimed_by_another
from schemas.frozen_copy import constructed
from schemas.identity import normalize_phone
from schemas.inbound import InboundError, ParsedWebhook, Purchase, parse_webhook
from schemas.inbound.request import Origin
from schemas.messages import AuditRecord, Command, CustomerRef, Outcome, RawEnvelope
from schemas.tenant_rules import TenantRules
from streams.grouping import run_grouped
from streams.request_records import dead_letter, refusal

log = get_logger(__name__)


@dataclass
class Normalized:
    commands: list[Command] = field(default_factory=list)
    refused: list[Outcome] = field(default_factory=list)
    dead: AuditRecord | None = None
    error: BaseException | None = None  # what made it dead, when it was an error
    # what it waits for, which may come later: a refund's order id not claimed yet, or
    # "referrer" for a registration naming a customer not registered yet
    waiting_for: str | None = None


class Normalizer:
    """What raw requests yield, given the settings and where the Postgres pool comes from (the
    identity directory, order claims, tenants not on the rules topic yet)."""

    def __init__(self, settings: Settings, pool: Callable[[], Awaitable[asyncpg.Pool]]) -> None:
        self.rules = RulesTable(settings)
        self._settings, self._pool = settings, pool
        self._tenants: TenantDirectory | None = None
        self._customers: CustomerDirectory | None = None

    async def _setup(self) -> None:
        if self._tenants is None:
            pool = await self._pool()
            self._tenants = TenantDirectory(pool, ttl_s=self._settings.tenant_cache_ttl_s)
            self._customers = CustomerDirectory(pool)

    async def tenant_rules(self, tenant_id: str) -> TenantRules | None:
        held = self.rules.get(tenant_id)
        if held is not None:
            return held[2]
        # Not (yet) on the topic, e.g. published while Kafka was down: Postgres has the truth.
        tenant = await until_done(lambda: self._tenants.by_id(tenant_id), "tenant")
        return tenant.rules if tenant is not None else None

    async def normalize(self, envs: list[RawEnvelope]) -> list[Normalized]:
        """What each raw record yields (commands, refusals, or its dead letter), in order.

        Runs of consecutive purchase requests (single, batch, Tilda) are resolved together:
        their items' customers concurrently, grouped by email and phone, so a busy shop's
        stream is not handled one request at a time; their orders are claimed in one
        statement per shop, first item first. Any other action is handled on its own, in
        its place, so what it depends on (a purchase before its refund) is already done."""
        await until_done(self._setup, "connect")
        prepared = [await self._prepare(env) for env in envs]
        results: list[Normalized | None] = [None] * len(envs)
        i = 0
        while i < len(envs):
            if isinstance(prepared[i], Normalized):
                results[i] = prepared[i]
                i += 1
                continue
            j = i
            while j < len(envs) and not isinstance(prepared[j], Normalized):
                if not prepared[j][1].purchases:
                    break
                j += 1
            if j > i:
                segment = [(envs[k], *prepared[k]) for k in range(i, j)]
                results[i:j] = await self._purchases(segment)
                i = j
                continue
            results[i] = await self._single(envs[i], *prepared[i])
            i += 1
        return results  # type: ignore[return-value]

    async def _prepare(self, env: RawEnvelope) -> tuple[TenantRules, ParsedWebhook] | Normalized:
        rules = await self.tenant_rules(env.tenant_id)
        if rules is None:
            return Normalized(dead=dead_letter(env, "unknown_tenant", None, "no such tenant"))
        try:
            parsed = parse_webhook(
                env.raw_body(), env.content_type, phone_region=rules.phone_region
            )
        except InboundError as exc:
            return Normalized(dead=dead_letter(env, exc.code, exc.field, exc.reason))
        return rules, parsed

    async def _single(
        self, env: RawEnvelope, rules: TenantRules, parsed: ParsedWebhook
    ) -> Normalized:
        try:
            return await self._commands(env, rules, parsed)
        except Refused as exc:
            out = Normalized(dead=dead_letter(env, exc.code, exc.field, exc.reason))
            out.refused.append(refusal(env, 0, exc.code, exc.reason))
            out.waiting_for = exc.waiting_for
            return out

    async def _purchases(
        self, segment: list[tuple[RawEnvelope, TenantRules, ParsedWebhook]]
    ) -> list[Normalized]:
        items = [(env, rules, p) for env, rules, parsed in segment for p in parsed.purchases]
        await self._create_new_customers(items)
        resolved = await run_grouped(
            items,
            lambda it: (
                (it[0].tenant_id, "email", it[2].email),
                (it[0].tenant_id, "phone", it[2].phone),
            ),
            lambda it: self._purchase(*it),
        )
        owners: dict[tuple[str, str], str] = {}
        by_tenant: dict[str, list[tuple[str, str]]] = {}
        for (env, _, p), r in zip(items, resolved, strict=True):
            if isinstance(r, CustomerRef):
                by_tenant.setdefault(env.tenant_id, []).append((p.order_id, r.id))
        for tenant_id, claims in by_tenant.items():
            claimed = await until_done(
                lambda t=tenant_id, c=claims: self._customers.claim_orders(t, c), "orders"
            )
            owners.update({(tenant_id, order): owner for order, owner in claimed.items()})
        out = {env.event_id: Normalized() for env, _, _ in segment}
        for (env, rules, p), result in zip(items, resolved, strict=True):
            if isinstance(result, CustomerRef) and owners[env.tenant_id, p.order_id] != result.id:
                result = claimed_by_another(p.order_id)
            done = out[env.event_id]
            if isinstance(result, Refused):
                done.refused.append(refusal(env, p.index, result.code, result.reason))
                continue
            done.commands.append(purchase_command(env, rules, p, result))
        return [out[env.event_id] for env, _, _ in segment]

    async def _create_new_customers(
        self, items: list[tuple[RawEnvelope, TenantRules, Purchase]]
    ) -> None:
        """The run's plainly new customers, created together before each item resolves its own
        (which then finds them in the directory's cache): a 10,000-item batch of new buyers
        was a transaction per buyer. A phone the tenant's region refuses is left to `_customer`,
        which refuses it."""
        people: dict[str, list[tuple[str | None, str | None, str | None]]] = {}
        for env, rules, p in items:
            try:
                phone = normalize_phone(p.phone, rules.phone_region) if p.phone else None
            except ValueError:
                continue
            people.setdefault(env.tenant_id, []).append((p.email, phone, p.name))
        for tenant_id, named in people.items():
            await until_done(
                lambda t=tenant_id, n=named: self._customers.create_new(t, n), "customers"
            )

    async def _commands(
        self, env: RawEnvelope, rules: TenantRules, parsed: ParsedWebhook
    ) -> Normalized:
        """The command of a request other than purchases (those go through `_purchases`): its
        action's module makes it (`ActionRequest.command`), looking up what it needs here."""
        out = Normalized()
        if parsed.request is not None:
            origin = Origin(
                command_id=derived_id(env.event_id, 0),
                request_id=env.event_id,
                tenant_id=env.tenant_id,
                rules=rules,
                occurred_at=env.received_at,
                wait=env.wait,
            )
            out.commands.append(await parsed.request.command(_Lookups(self, env, rules), origin))
        return out

    async def _customer(
        self, tenant_id: str, rules: TenantRules, email, phone, name
    ) -> CustomerRef:
        try:  # the ingress checked it, but the tenant's region may have changed since
            phone = normalize_phone(phone, rules.phone_region) if phone else None
        except ValueError as exc:
            raise Refused("invalid_field", str(exc), "phone") from None
        return await until_done(
            lambda: self._customers.resolve(tenant_id, email=email, phone=phone, name=name),
            "customer",
        )

    async def _purchase(
        self, env: RawEnvelope, rules: TenantRules, p: Purchase
    ) -> CustomerRef | Refused:
        try:
            return await self._customer(env.tenant_id, rules, p.email, p.phone, p.name)
        except Refused as exc:
            return exc


def purchase_command(
    env: RawEnvelope, rules: TenantRules, p: Purchase, customer: CustomerRef
) -> PurchaseCommand:
    """The command of one purchase, built from parts already checked (the envelope read from
    Kafka, the parsed body, the tenant's rules, the customer found): not validated again, which
    was a third of the cost of making one (the ledger validates what it reads)."""
    return constructed(
        PurchaseCommand,
        command_id=derived_id(env.event_id, p.index),
        request_id=env.event_id,
        wait=env.wait,
        tenant_id=env.tenant_id,
        rules=rules,
        item=p.index,
        customer=customer,
        order_id=p.order_id,
        amount=p.amount,
        description=p.description,
        occurred_at=env.received_at,
    )


class _Lookups:
    """What an action's request may look up while it becomes a command
    (schemas.inbound.request.Directory), for one request's shop."""

    def __init__(self, normalizer: Normalizer, env: RawEnvelope, rules: TenantRules) -> None:
        self._n, self._env, self._rules = normalizer, env, rules
        self._tenant_id, self._customers = env.tenant_id, normalizer._customers

    async def customer(
        self, email: str | None, phone: str | None, name: str | None = None
    ) -> CustomerRef:
        return await self._n._customer(self._tenant_id, self._rules, email, phone, name)

    async def claim(self, order_id: str, customer: CustomerRef) -> None:
        owner = await until_done(
            lambda: self._customers.claim_order(self._tenant_id, order_id, customer.id), "order"
        )
        if owner != customer.id:
            raise claimed_by_another(order_id)

    async def order_owner(self, order_id: str) -> CustomerRef | None:
        return await until_done(
            lambda: self._customers.order_owner(self._tenant_id, order_id), "order"
        )

    async def referrer(self, customer: CustomerRef, kind: str, value: str) -> str | None:
        if kind == "phone":
            value = normalize_phone(value, self._rules.phone_region)
        try:
            return await until_done(
                lambda: self._customers.check_referrer(self._tenant_id, customer.id, kind, value),
                "referrer",
            )
        except ReferralRefused as exc:
            if exc.code != "unknown_referrer":
                raise Refused(exc.code, exc.reason, "referrer") from None
            return await self._referrer_ahead(kind, value, exc)

    async def _referrer_ahead(self, kind: str, value: str, refused: ReferralRefused) -> str:
        """The referrer of a registration the ingress accepted, which it does only once the
        referrer is known (ingest.precheck): its own requests are on their way, on another
        partition of webhooks.raw (a replay into a new deployment: another partition count).
        Waiting for them would let this customer's later requests, on its own partition,
        overtake its registration; its referrer is found or created by that identity instead,
        as the referrer's own request will (kopilka.directory.customers derives the id from it). A
        referral code cannot be created ahead: that registration waits on webhooks.deferred
        (streams.deferral, streams.raw_progress).

        Limits (README, Referrals): a referrer first seen by phone but named here by email
        becomes two customers (identity_conflicts), and replayed records older than the ingress's
        check (26 Nov 2026) would make a customer of a mistyped referrer."""
        if kind not in ("email", "phone"):
            raise Refused(refused.code, refused.reason, "referrer", waiting_for="referrer")
        env = self._env
        referrer = await until_done(
            lambda: self._customers.resolve(
                env.tenant_id,
                email=value if kind == "email" else None,
                phone=value if kind == "phone" else None,
            ),
            "customer",
        )
        log.info(
            "referrer_created_ahead",
            request_id=env.event_id,
            tenant_id=env.tenant_id,
            referrer_id=referrer.id,
        )
        return referrer.id

    async def register(
        self, customer: CustomerRef, referrer_id: str | None
    ) -> tuple[str, str | None]:
        return await until_done(
            lambda: self._customers.register(self._tenant_id, customer.id, referrer_id),
            "register",
        )
