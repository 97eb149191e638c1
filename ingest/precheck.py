"""Checks made before a request is accepted, where an answer now beats a refusal later.

A registration naming a referrer is checked against the identity directory at once, so the
shop gets 422 with the reason (unknown referrer, self-referral, cycle) instead of a 202 whose
refusal only shows in the outcome. The worker checks again when it applies the registration:
this is a courtesy, the worker is the authority.
"""

from __future__ import annotations

from kopilka.customers import CustomerDirectory, ReferralRefused
from kopilka.tenants import Tenant
from schemas.identity import normalize_phone
from schemas.inbound import InboundError, ParsedWebhook


def needed(parsed: ParsedWebhook) -> bool:
    """Only a registration naming a referrer is checked (everything else skips the timer too)."""
    return parsed.registration is not None and parsed.registration.referrer is not None


async def check(directory: CustomerDirectory, tenant: Tenant, parsed: ParsedWebhook) -> None:
    """Raise InboundError(422) for a registration the worker would refuse."""
    reg = parsed.registration
    if reg is None or reg.referrer is None:
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
