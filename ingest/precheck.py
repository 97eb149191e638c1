"""Checks made before a request is accepted, where an answer now beats a refusal later.

A registration naming a referrer is checked against the identity directory at once, so the
shop gets 422 with the reason (unknown referrer, self-referral, cycle) instead of a 202 whose
refusal only shows in the outcome. The worker checks again when it applies the registration:
this is a courtesy, the worker is the authority.
"""

from __future__ import annotations

import asyncio

from kopilka.core.logging import get_logger
from kopilka.directory.customers import CustomerDirectory, ReferralRefused
from kopilka.directory.tenants import DATABASE_DOWN, Tenant
from schemas.actions.register import Registration
from schemas.identity import normalize_phone
from schemas.inbound import InboundError, ParsedWebhook
from schemas.messages import CustomerRef

log = get_logger(__name__)


def needed(parsed: ParsedWebhook) -> bool:
    """Only a registration naming a referrer is checked (everything else skips the timer too)."""
    reg = parsed.request
    return isinstance(reg, Registration) and reg.referrer is not None


async def check(directory: CustomerDirectory, tenant: Tenant, parsed: ParsedWebhook) -> None:
    """Raise InboundError(422) for a registration the worker would refuse."""
    reg = parsed.request
    if not isinstance(reg, Registration) or reg.referrer is None or reg.referrer_kind is None:
        return
    phone = normalize_phone(reg.phone, tenant.phone_region) if reg.phone else None
    customer = None
    for kind, value in (("email", reg.email), ("phone", phone)):
        if value and customer is None:
            customer = await directory.find(tenant.id, kind, value)
    value = reg.referrer
    if reg.referrer_kind == "phone":
        value = normalize_phone(value, tenant.phone_region)
    same_identity = value in (reg.email, phone)
    try:
        if same_identity and customer is None:
            raise ReferralRefused("self_referral", "a customer cannot refer themselves")
        await directory.check_referrer(tenant.id, customer, reg.referrer_kind, value)
    except ReferralRefused as exc:
        raise InboundError(422, exc.code, exc.reason, "referrer") from None


async def refund_owner(
    directory: CustomerDirectory, tenant: Tenant, order_id: str, timeout_s: float
) -> CustomerRef | None:
    """Who owns the refunded order, so the refund is keyed like that customer's requests and
    cannot overtake their spend (schemas.routing): asked when the edge's order routes do not
    know the order (ingest.order_routes). None when the order is not claimed yet or the
    database does not answer in time: the refund is accepted all the same, keyed by its order,
    and the worker holds it until what came before it is normalised (streams.raw_progress)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await directory.order_owner(tenant.id, order_id)
    except DATABASE_DOWN as exc:
        log.warning("refund_owner_unavailable", tenant_id=tenant.id, error=type(exc).__name__)
        return None
