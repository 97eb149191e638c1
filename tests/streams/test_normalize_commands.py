"""streams.normalizer builds a purchase's command without validating it again: it must be the
command validation would have made, to the byte."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

AT = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)


def test_purchase_commands_are_built_as_validated_ones():
    from schemas.commands import PurchaseCommand
    from schemas.inbound import parse_webhook
    from schemas.messages import CustomerRef, RawEnvelope
    from schemas.tenant_rules import TenantRules
    from streams.normalizer import purchase_command

    body = b'{"action":"purchase","payload":{"email":"a@b.c","amount":"99.90","orderId":"O-7"}}'
    env = RawEnvelope.wrap(
        body, event_id="e", tenant_id="t", received_at=AT, content_type=None, wait=True
    )
    [p] = parse_webhook(env.raw_body(), None).purchases
    rules, customer = TenantRules(hold_days=3), CustomerRef(id="c", email="a@b.c")
    made = purchase_command(env, rules, p, customer)
    validated = PurchaseCommand(
        command_id=made.command_id,
        request_id="e",
        wait=True,
        tenant_id="t",
        rules=rules,
        item=0,
        customer=customer,
        order_id="O-7",
        amount=Decimal("99.90"),
        description=None,
        occurred_at=AT,
    )
    assert made == validated and made.to_bytes() == validated.to_bytes()
