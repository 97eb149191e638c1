"""schemas.frozen_copy.replaced is model_copy(update=...) for the ledger's hot path: the same
values, the same fields set, the same bytes when serialised, the original untouched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.frozen_copy import constructed, replaced
from schemas.rules.state import CustomerState, Lot, OrderState, Remembered, Taken

AT = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)


def _lot(i: int) -> Lot:
    return Lot(lot_id=f"lot-{i}", remaining=i, available_at=AT, expires_at=AT + timedelta(i))


def _same(a: BaseModel, b: BaseModel) -> None:
    assert type(a) is type(b)
    assert a == b
    assert a.__dict__ == b.__dict__ and list(a.__dict__) == list(b.__dict__)
    assert a.model_fields_set == b.model_fields_set
    assert a.model_dump_json() == b.model_dump_json()


def test_like_model_copy_on_every_state_model():
    order = OrderState(
        purchase_command="c1",
        amount=Decimal("12.50"),
        spent=(Taken(lot_id="l", points=3, available_at=AT, expires_at=AT),),
        refunds={"r1": "c2"},
        emitted=(Remembered(command_id="c1", status="applied", events=('{"a":1}',)),),
    )
    state = CustomerState(seq=4, lots=(_lot(1), _lot(2)), last_order=order)
    cases = [
        (_lot(3), {"remaining": 7}),
        (order, {"refunded": Decimal(5), "refunds": {"r1": "c2", "r2": "c3"}}),
        (OrderState(), {"purchase_command": "c9", "awarded": 3}),
        (state, {"seq": 5, "lots": (_lot(4),), "level": "gold", "last_order": None}),
        (CustomerState(), {"recent": (Remembered(command_id="x", status="rejected", events=()),)}),
        (state, {}),
    ]
    for model, changes in cases:
        before = model.model_dump_json()
        _same(replaced(model, **changes), model.model_copy(update=changes))
        assert model.model_dump_json() == before  # the original is left as it was


def test_a_copy_is_its_own_object_and_stays_frozen():
    lot = _lot(1)
    copy = replaced(lot, remaining=2)
    assert copy is not lot and copy.__dict__ is not lot.__dict__
    assert lot.remaining == 1 and copy.remaining == 2
    with pytest.raises(ValidationError, match="frozen"):
        copy.remaining = 3


class _WithExtra(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    a: int = 0


def test_models_with_extra_fields_take_model_copys_path():
    model = _WithExtra(a=1, b=2)
    _same(replaced(model, a=3), model.model_copy(update={"a": 3}))
    assert replaced(model, a=3).__pydantic_extra__ == {"b": 2}


def test_to_bytes_writes_what_model_dump_json_wrote():
    """Records, events and table entries encode with the serialiser directly: the same bytes."""
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
        CustomerState(lots=(_lot(1),), last_order=OrderState(refunds={"r": "c"})),
        OrderState(
            amount=Decimal("0.10"),
            emitted=(Remembered(command_id="c", status="applied", events=('{"x":"\\u0001"}',)),),
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
