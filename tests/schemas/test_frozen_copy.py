"""schemas.frozen_copy.constructed is model_construct for the parser's hot path: the same values,
the same fields set, the same bytes when serialised; and the hot path's models encode with
their serialiser directly, to model_dump_json's bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import BaseModel

from schemas.frozen_copy import constructed

AT = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)


def _same(a: BaseModel, b: BaseModel) -> None:
    assert type(a) is type(b)
    assert a == b
    assert a.__dict__ == b.__dict__ and list(a.__dict__) == list(b.__dict__)
    assert a.model_fields_set == b.model_fields_set
    assert a.model_dump_json() == b.model_dump_json()


def test_to_bytes_writes_what_model_dump_json_wrote():
    """Records and events encode with the serialiser directly: the same bytes."""
    from schemas.commands import PurchaseCommand
    from schemas.events import BonusAwarded
    from schemas.messages import AuditRecord, CustomerRef
    from schemas.tenant_rules import TenantRules

    customer = CustomerRef(id="c", email="ё@example.com")
    models = [
        AuditRecord(
            event_id="e",
            tenant_id="t",
            received_at=AT,
            status="accepted",
            code="ok",
            reason="1 command(s), 0 refused",
        ),
        PurchaseCommand(
            command_id="c",
            request_id="r",
            tenant_id="t",
            customer=customer,
            occurred_at=AT,
            rules=TenantRules(),
            order_id="o",
            amount=Decimal("1E+2"),
        ),
        BonusAwarded(
            event_id="e",
            tenant_id="t",
            customer=customer,
            occurred_at=AT,
            seq=1,
            balance_after=5,
            lifetime_spend="100",
            order_id="o",
            amount="100",
            percent="5",
            points=5,
            available_at=AT,
            expires_at=AT,
        ),
    ]
    for model in models:
        assert model.to_bytes() == model.model_dump_json().encode()


def test_constructed_is_model_construct_and_equals_the_validated_model():
    from schemas.inbound import ParsedWebhook, Purchase

    fields = {"order_id": "O-1", "amount": Decimal("10.5"), "source": "standard", "email": "a@b.c"}
    built = constructed(Purchase, **fields)
    _same(built, Purchase.model_construct(**fields))
    _same(built, Purchase(**fields))  # defaults filled in (the attributes dict a fresh one)
    assert (
        built.attributes == {}
        and built.attributes is not constructed(Purchase, **fields).attributes
    )
    parsed = constructed(ParsedWebhook, action="purchase", purchases=(built,))
    _same(parsed, ParsedWebhook(action="purchase", purchases=(built,)))
    with pytest.raises(TypeError, match="orderid"):
        constructed(Purchase, orderid="O-1", **fields)
