"""The inbound models are the one description of each format: what they validate is what the
OpenAPI document shows, their fast paths read values exactly as the slow ones, and a refusal
names the first fault in field order with the keys as the shop spelt them."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticCustomError

from schemas.actions.purchase import StandardWebhook
from schemas.actions.purchase_batch import BatchWebhook
from schemas.actions.refund import RefundWebhook
from schemas.actions.register import RegisterWebhook
from schemas.actions.spend import SpendWebhook
from schemas.errors import InboundError
from schemas.identity import normalize_email
from schemas.inbound import TildaOrder, TildaOrders, parse_webhook
from schemas.inbound.fields import MAX_ORDER_ID, email, money, order_id
from schemas.inbound.model import MAX_PLAN_KEYS, MAX_PLANS, fold, is_blank
from schemas.text_checks import identifier

JSON = "application/json"
REQUEST_MODELS = [
    StandardWebhook,
    BatchWebhook,
    RegisterWebhook,
    SpendWebhook,
    RefundWebhook,
    TildaOrder,
    TildaOrders,
]


# --- fast paths read exactly as the slow ones ---------------------------------------------

EMAILISH = st.one_of(
    st.emails().map(lambda e: f" {e.upper()} "),
    st.text(alphabet=st.sampled_from("aB.@-_ +\t\x00é"), max_size=12),
    st.text(max_size=20),
)


def outcome(fn: Any, value: Any) -> tuple[str, str]:
    try:
        return "ok", fn(value)
    except PydanticCustomError as exc:
        return "refused", (exc.context or {})["reason"]
    except (ValueError, InboundError) as exc:
        return "refused", getattr(exc, "reason", str(exc))


@given(EMAILISH)
def test_email_reads_as_normalize_email(raw: str) -> None:
    assert outcome(email, raw) == outcome(normalize_email, raw)


def slow_order_id(value: str) -> str:
    ident = identifier("", value.strip())
    if len(ident) > MAX_ORDER_ID:
        raise InboundError(422, "invalid_field", f"is longer than {MAX_ORDER_ID} characters")
    return ident


@given(st.text(max_size=140))
def test_order_id_reads_as_identifier(raw: str) -> None:
    assert outcome(order_id, raw) == outcome(slow_order_id, raw)


@pytest.mark.parametrize("value", [0, 1, 24450, 10**12 - 1, 10**12, -1, -(10**12)])
def test_integer_money_reads_as_its_decimal(value: int) -> None:
    assert outcome(money, value) == outcome(money, Decimal(value))


CASES = st.sampled_from(["email", "Email", "EMAIL", "ma_email", "MA_Email", "phone", "Phone"])
VALUES = st.sampled_from([None, "", "  ", "a@b.co", "x@y.zz", "+79991112233", 5])


@given(st.dictionaries(CASES, VALUES, max_size=6))
def test_fields_are_read_in_any_case_and_blanks_never_hide_values(obj: dict[str, Any]) -> None:
    """The cached plans of keys give what a case-insensitive fold gives."""
    folded = fold(obj)
    expected = {}
    for field, names in TildaOrder.names.items():
        for name in names:
            hit = folded.get(name)
            if hit is not None and not is_blank(hit[1]):
                expected[field] = hit
                break
    assert TildaOrder.hits(obj) == expected


def test_plans_of_keys_are_bounded() -> None:
    for i in range(MAX_PLANS + 10):
        StandardWebhook.hits({"payload": {}, f"extra{i}": 1})
    assert len(StandardWebhook.plans) <= MAX_PLANS
    huge = {f"k{i}": 1 for i in range(MAX_PLAN_KEYS + 1)}
    assert StandardWebhook.hits({**huge, "Payload": "x"}) == {"payload": ("Payload", "x")}
    assert all(len(keys) <= MAX_PLAN_KEYS for keys in StandardWebhook.plans)


# --- the document is the validator --------------------------------------------------------


@pytest.fixture(scope="module")
def request_schema() -> Draft202012Validator:
    keyed, defs = models_json_schema(
        [(model, "validation") for model in REQUEST_MODELS], ref_template="#/$defs/{model}"
    )
    schema = {"anyOf": [keyed[(m, "validation")] for m in REQUEST_MODELS], **defs}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


VALID = {
    "purchase": {
        "action": "purchase",
        "payload": {"email": "a@example.com", "orderId": "A-1", "amount": "1500.50"},
    },
    "purchase by phone, integer id": {
        "action": "purchase",
        "payload": {"phone": "+7 999 111-22-33", "orderId": 7, "amount": 10, "name": "Ann"},
    },
    "batch": {
        "action": "batch_purchase",
        "payload": {"purchases": [{"email": "a@example.com", "orderId": "1", "amount": 1}]},
    },
    "register": {
        "action": "register_user",
        "payload": {"email": "b@example.com", "referralCode": "ABC123"},
    },
    "spend": {
        "action": "spend_bonuses",
        "payload": {"phone": "89991112233", "orderId": "S-1", "points": "10", "orderAmount": 99},
    },
    "refund": {"action": "refund", "payload": {"orderId": "A-1", "refundId": "R-1", "amount": 5}},
    "tilda order": {
        "name": "Ivan",
        "email": "ivan@example.com",
        "payment": {
            "orderid": "1557604691",
            "amount": 24450,
            "products": [{"name": "Chair", "quantity": 1, "price": 4500}, "Table=1000"],
        },
        "formid": "form42581206",
    },
    "tilda payment as JSON text": {
        "phone": "+7 (999) 111-22-33",
        "payment": json.dumps({"orderid": 1, "amount": "10.50"}),
    },
    "tilda array": [{"email": "a@example.com", "payment": {"orderid": 1, "amount": 1}}],
}


@pytest.mark.parametrize("body", VALID.values(), ids=VALID.keys())
def test_a_body_the_models_accept_matches_the_documented_schema(
    request_schema: Draft202012Validator, body: Any
) -> None:
    parse_webhook(json.dumps(body).encode(), JSON)  # accepted
    errors = [e.message for e in request_schema.iter_errors(body)]
    assert not errors


def test_hidden_fields_stay_out_of_the_document() -> None:
    text = json.dumps([m.model_json_schema() for m in REQUEST_MODELS])
    for hidden in ('"identity"', '"referrer"', '"lines"', '"attributes"', '"listed"'):
        assert hidden not in text


# --- refusals name the field as sent, the first fault in field order ----------------------


def refusal(body: Any, content_type: str = JSON) -> InboundError:
    with pytest.raises(InboundError) as info:
        parse_webhook(json.dumps(body).encode(), content_type)
    return info.value


ORDER = {"Email": "ivan@example.com", "payment": {"orderid": 1, "amount": 5}}

REFUSALS: dict[str, tuple[Any, str, str]] = {
    "keys as spelt": (
        {"action": "purchase", "PAYLOAD": {"EMAIL": "a@b.co", "OrderID": 1.5, "amount": 1}},
        "invalid_field",
        "PAYLOAD.OrderID",
    ),
    "nested tilda keys as spelt": (
        {**ORDER, "payment": {"OrderId": 1, "AMOUNT": 5, "Products": [{"PRICE": "x"}]}},
        "invalid_field",
        "payment.Products[0].PRICE",
    ),
    "no customer before no order id": (
        {"action": "purchase", "payload": {"amount": "x"}},
        "missing_field",
        "payload.email",
    ),
    "bad email before bad cart line": (
        {**ORDER, "Email": "nope", "payment": {"orderid": 1, "amount": 5, "products": [1]}},
        "invalid_field",
        "Email",
    ),
    "cart line before name": (
        {**ORDER, "Name": [1], "payment": {"orderid": 1, "amount": 5, "products": [1]}},
        "invalid_field",
        "payment.products[0]",
    ),
    "price before product name": (
        {**ORDER, "payment": {"orderid": 1, "amount": 5, "products": [{"name": [], "price": "x"}]}},
        "invalid_field",
        "payment.products[0].price",
    ),
    "bad tranid stands for the order id": (
        {**ORDER, "payment": {"amount": 5}, "TranId": "x" * 200},
        "invalid_field",
        "TranId",
    ),
    "array element": (
        [ORDER, {**ORDER, "Email": None}],
        "missing_field",
        "[1].email",
    ),
    "second referrer": (
        {
            "action": "register_user",
            "payload": {"email": "a@b.co", "ReferrerEmail": "c@d.co", "referralCode": "X"},
        },
        "invalid_field",
        "payload.ReferrerEmail",
    ),
    "batch item": (
        {
            "action": "batch_purchase",
            "Payload": {"Purchases": [{"email": "a@b.co", "orderId": "1", "AMOUNT": -1}]},
        },
        "invalid_field",
        "Payload.Purchases[0].AMOUNT",
    ),
}


@pytest.mark.parametrize("body,code,field", REFUSALS.values(), ids=REFUSALS.keys())
def test_refusal_names_the_first_fault_as_sent(body: Any, code: str, field: str) -> None:
    exc = refusal(body)
    assert (exc.status, exc.code, exc.field) == (422, code, field), exc.reason
