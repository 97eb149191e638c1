"""Inbound webhook parsing: every Tilda variant, the standard format, and every error path."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest

from schemas.inbound import (
    MAX_ITEMS,
    InboundError,
    ParsedWebhook,
    Product,
    Purchase,
    parse_webhook,
)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

CANONICAL = Purchase(
    order_id="1557604691",
    amount=Decimal("24450"),
    email="ivan@example.com",
    phone="+7 (999) 111-22-33",
    name="Ivan",
    products=(Product(name="Chair", quantity=Decimal(1), price=Decimal(4500)),),
    source="tilda",
    attributes={"formid": "form42581206", "formname": "Cart"},
)

TILDA_FORM = (
    "Name=Ivan&Phone=%2B7+(999)+111-22-33&Email=Ivan@Example.com"
    "&payment[orderid]=1557604691&payment[amount]=24450"
    "&payment[products][0][name]=Chair&payment[products][0][quantity]=1"
    "&payment[products][0][price]=4500&formid=form42581206&formname=Cart"
)


def payment(**overrides: Any) -> dict[str, Any]:
    base = {
        "orderid": 1557604691,
        "amount": 24450,
        "products": [{"name": "Chair", "quantity": 1, "price": 4500}],
    }
    return {**base, **overrides}


def order(**overrides: Any) -> dict[str, Any]:
    base = {
        "Name": "Ivan",
        "Phone": "+7 (999) 111-22-33",
        "Email": "Ivan@Example.com",
        "payment": payment(),
        "formid": "form42581206",
        "formname": "Cart",
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def parse(body: bytes | str, content_type: str | None = JSON) -> ParsedWebhook:
    return parse_webhook(body.encode() if isinstance(body, str) else body, content_type)


def only(parsed: ParsedWebhook) -> Purchase:
    assert parsed.action == "purchase"
    assert len(parsed.purchases) == 1
    return parsed.purchases[0]


def error(body: bytes | str, content_type: str | None = JSON) -> InboundError:
    with pytest.raises(InboundError) as info:
        parse(body, content_type)
    return info.value


# --- Tilda variants ------------------------------------------------------------------------

TILDA_VARIANTS: dict[str, tuple[bytes | str, str | None]] = {
    "form with bracket keys": (TILDA_FORM, FORM),
    "form, charset param": (TILDA_FORM, f"{FORM}; charset=UTF-8"),
    "form, no content type": (TILDA_FORM, None),
    "form, payment as JSON string": (
        "Name=Ivan&Phone=%2B7+(999)+111-22-33&Email=Ivan@Example.com"
        f"&payment={quote(json.dumps(payment()))}&formid=form42581206&formname=Cart",
        FORM,
    ),
    "json object": (dumps(order()), JSON),
    "json object, no content type": (dumps(order()), None),
    "json array": (dumps([order()]), JSON),
    "json array, charset and text/json": (dumps([order()]), "text/json; charset=utf-8"),
    "payment as JSON string": (dumps(order(payment=json.dumps(payment()))), JSON),
    "payment as JSON string with &quot;": (
        dumps(order(payment=json.dumps(payment()).replace('"', "&quot;"))),
        JSON,
    ),
    "amounts as strings": (
        dumps(
            order(
                payment=payment(
                    orderid="1557604691",
                    amount="24450",
                    products=[{"name": "Chair", "quantity": "1", "price": "4500"}],
                )
            )
        ),
        JSON,
    ),
    "upper-case names": (
        dumps(
            {
                "NAME": "Ivan",
                "PHONE": "+7 (999) 111-22-33",
                "EMAIL": "Ivan@Example.com",
                "Payment": {
                    "OrderID": 1557604691,
                    "AMOUNT": 24450,
                    "Products": [{"NAME": "Chair", "Quantity": 1, "PRICE": 4500}],
                },
                "FORMID": "form42581206",
                "FormName": "Cart",
            }
        ),
        JSON,
    ),
    "lower-case names": (
        dumps(
            {
                "name": "Ivan",
                "phone": "+7 (999) 111-22-33",
                "email": "Ivan@Example.com",
                "payment": {**payment(orderid=None), "orderId": 1557604691},
                "formid": "form42581206",
                "formname": "Cart",
            }
        ),
        JSON,
    ),
    "ma_email fallback": (dumps(order(Email=None, ma_email="Ivan@Example.com")), JSON),
    "blank Email, ma_email fallback": (dumps(order(Email="", ma_email="ivan@example.com")), JSON),
    "order id from tranid": (
        dumps(order(payment=payment(orderid=None), tranid="1557604691")),
        JSON,
    ),
}


@pytest.mark.parametrize("body,content_type", TILDA_VARIANTS.values(), ids=TILDA_VARIANTS.keys())
def test_tilda_variant_gives_the_canonical_purchase(
    body: bytes | str, content_type: str | None
) -> None:
    purchase = only(parse(body, content_type))
    if "tranid" in purchase.attributes:
        purchase = purchase.model_copy(update={"attributes": CANONICAL.attributes})
    assert purchase == CANONICAL


def test_ma_phone_fallback() -> None:
    purchase = only(parse(dumps(order(Email=None, Phone=None, ma_phone="89991112233"))))
    assert purchase.email is None
    assert purchase.phone == "89991112233"


PRODUCT_STRINGS = {
    "json": (dumps(order(payment=payment(products=["Chair=4500"]))), JSON),
    "form": (
        TILDA_FORM.split("&payment[products]")[0] + "&payment[products][0]=Chair%3D4500"
        "&formid=form42581206&formname=Cart",
        FORM,
    ),
}


@pytest.mark.parametrize("body,content_type", PRODUCT_STRINGS.values(), ids=PRODUCT_STRINGS.keys())
def test_products_as_strings(body: bytes | str, content_type: str) -> None:
    purchase = only(parse(body, content_type))
    assert purchase.products == (Product(name="Chair", amount=Decimal(4500)),)
    assert purchase.model_copy(update={"products": CANONICAL.products}) == CANONICAL


def test_product_strings_without_price_and_unicode() -> None:
    products = ["Товар=1000", "Просто товар", "Размер=L=250.50", "Подарок=бесплатно"]
    purchase = only(parse(dumps(order(payment=payment(products=products)))))
    assert purchase.products == (
        Product(name="Товар", amount=Decimal(1000)),
        Product(name="Просто товар"),
        Product(name="Размер=L", amount=Decimal("250.50")),
        Product(name="Подарок=бесплатно"),
    )


def test_json_array_gives_one_purchase_per_element() -> None:
    second = order(Email="other@example.com", payment=payment(orderid="2", amount="0"))
    parsed = parse(dumps([order(), second]))
    assert [p.order_id for p in parsed.purchases] == ["1557604691", "2"]
    assert parsed.purchases[1].amount == Decimal(0)


def test_extra_fields_become_attributes() -> None:
    cookies = "TILDAUTM=utm_source%3Dgoogle%7C%7C%7Cutm_medium%3Dcpc%7C%7Cutm_term%3D; _ga=GA1.2.3"
    body = order(
        payment=payment(promocode="SALE", discount="10", subtotal=27000, delivery="Courier"),
        tranid="1234:5678",
        systranid="99",
        utm_campaign="spring",
        utm_source="yandex",
        delivery_address="x" * 1000,
        COOKIES=cookies,
        sys="ignored",
        tags={"not": "a string"},
    )
    attributes = only(parse(dumps(body))).attributes
    assert attributes == {
        "promocode": "SALE",
        "discount": "10",
        "subtotal": "27000",
        "delivery": "Courier",
        "formid": "form42581206",
        "formname": "Cart",
        "tranid": "1234:5678",
        "systranid": "99",
        "utm_campaign": "spring",
        "utm_source": "yandex",
        "delivery_address": "x" * 256,
        "utm_medium": "cpc",
    }


def test_cookie_utm_from_form() -> None:
    cookies = "_ym=1; TILDAUTM=utm_source%3Dgoogle%7C%7Cutm_medium%3Dcpc%7C%7C%7C; _ga=GA1"
    purchase = only(parse(f"{TILDA_FORM}&COOKIES={quote(cookies)}", FORM))
    assert purchase.attributes["utm_source"] == "google"
    assert purchase.attributes["utm_medium"] == "cpc"
    assert all("_ga" not in v and "_ym" not in v for v in purchase.attributes.values())


@pytest.mark.parametrize(
    "body,content_type",
    [
        ("test=test", FORM),
        ("test=test", None),
        ('{"test": "test"}', JSON),
        ('[{"test": "test"}]', JSON),
    ],
)
def test_tilda_connection_check(body: str, content_type: str | None) -> None:
    assert parse(body, content_type) == ParsedWebhook(action="tilda_test", purchases=())


# --- standard format -----------------------------------------------------------------------


def standard(**payload: Any) -> bytes:
    base = {
        "email": "User@Example.com",
        "phone": "+79001234567",
        "amount": 5000,
        "orderId": "ORDER-123",
        "description": "Покупка товаров",
    }
    return dumps({"action": "purchase", "payload": {**base, **payload}})


def test_standard_purchase() -> None:
    assert only(parse(standard())) == Purchase(
        order_id="ORDER-123",
        amount=Decimal(5000),
        email="user@example.com",
        phone="+79001234567",
        description="Покупка товаров",
        source="standard",
    )


def test_standard_purchase_with_phone_only_and_integer_order_id() -> None:
    purchase = only(parse(standard(email=None, orderId=42, name=" Ivan ")))
    assert (purchase.email, purchase.phone, purchase.order_id) == (None, "+79001234567", "42")
    assert purchase.name == "Ivan"


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "APPLICATION/JSON", "application/x+json"]
)
def test_json_content_type_variants(content_type: str) -> None:
    assert only(parse(standard(), content_type)).order_id == "ORDER-123"


# --- money is exact ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        ('"24450.50"', "24450.50"),
        ("24450.50", "24450.50"),
        ('"0"', "0"),
        ("0", "0"),
        ("0.00", "0.00"),
        ('"-0"', "0"),
        ("0.1", "0.1"),
        ("1234.5678", "1234.5678"),
        ("999999999999.99", "999999999999.99"),
        ('"999999999999.99"', "999999999999.99"),
        ("100000000000", "100000000000"),
        ("1e3", "1000"),
        ("19.99", "19.99"),
    ],
)
def test_amount_is_exact(raw: str, expected: str) -> None:
    body = '{"action": "purchase", "payload": {"email": "a@b.co", "orderId": 1, "amount": %s}}'
    amount = only(parse(body % raw)).amount
    assert isinstance(amount, Decimal)
    assert str(amount) == expected


def test_tilda_amount_string_with_cents_is_exact() -> None:
    purchase = only(parse(TILDA_FORM.replace("amount]=24450", "amount]=24450.50"), FORM))
    assert str(purchase.amount) == "24450.50"


# --- errors --------------------------------------------------------------------------------

ERRORS: dict[str, tuple[bytes | str, str | None, int, str, str | None]] = {
    "malformed json": ('{"action": ', JSON, 400, "malformed_json", None),
    "sniffed malformed json": ("[{]", None, 400, "malformed_json", None),
    "NaN": (
        '{"action": "purchase", "payload": {"amount": NaN}}',
        JSON,
        400,
        "malformed_json",
        None,
    ),
    "Infinity": ('[{"payment": {"amount": Infinity}}]', JSON, 400, "malformed_json", None),
    "invalid utf-8 in a value": (b'{"a": "\xff"}', JSON, 422, "invalid_field", "a"),
    "invalid utf-8 outside strings": (b'{"a": 1\xff}', JSON, 400, "malformed_json", None),
    "huge integer": ('{"a": ' + "9" * 5000 + "}", JSON, 400, "malformed_json", None),
    "nesting bomb": ("[" * 100 + "]" * 100, JSON, 400, "malformed_json", None),
    "nesting bomb in object": ('{"a":' * 40 + "1" + "}" * 40, None, 400, "malformed_json", None),
    "form nesting bomb": (
        "a" + "[x]" * 40 + "=1",
        FORM,
        400,
        "malformed_form",
        ("a" + "[x]" * 40)[:80],
    ),
    "form value and group": ("p=1&p[a]=2", FORM, 400, "malformed_form", "p[a]"),
    "form bad percent utf-8": ("Name=%FF", FORM, 422, "invalid_field", "Name"),
    "form bad raw utf-8": (b"Name=\xff", FORM, 422, "invalid_field", "Name"),
    "empty body": (b"", JSON, 400, "empty_body", None),
    "blank body, no type": (b"  \r\n", None, 400, "empty_body", None),
    "text/plain": ("test=test", "text/plain", 415, "unsupported_media_type", None),
    "multipart": ("x", "multipart/form-data; boundary=x", 415, "unsupported_media_type", None),
    "xml": ("<a/>", "application/xml", 415, "unsupported_media_type", None),
    "unknown charset": (
        "{}",
        "application/json; charset=nope",
        415,
        "unsupported_media_type",
        None,
    ),
    "unknown action": ('{"action": "buy", "payload": {}}', JSON, 422, "unknown_action", "action"),
    "non-string action": ('{"action": 1}', JSON, 422, "unknown_action", "action"),
    "refund without order": (
        '{"action": "refund", "payload": {"amount": 5}}',
        JSON,
        422,
        "missing_field",
        "payload.orderId",
    ),
    "refund of zero": (
        '{"action": "refund", "payload": {"orderId": "A", "amount": "0"}}',
        JSON,
        422,
        "invalid_field",
        "payload.amount",
    ),
    "batch without purchases": (
        '{"action": "batch_purchase", "payload": {}}',
        JSON,
        422,
        "missing_field",
        "payload.purchases",
    ),
    "batch all bad": (
        '{"action": "batch_purchase", "payload": {"purchases": [{"amount": 1}]}}',
        JSON,
        422,
        "missing_field",
        "payload.purchases[0].email",
    ),
    "spend of fractional points": (
        '{"action": "spend_bonuses", "payload": {"email": "a@b.ru", "orderId": "A",'
        ' "points": 1.5}}',
        JSON,
        422,
        "invalid_field",
        "payload.points",
    ),
    "spend without points": (
        '{"action": "spend_bonuses", "payload": {"email": "a@b.ru", "orderId": "A"}}',
        JSON,
        422,
        "missing_field",
        "payload.points",
    ),
    "register with two referrers": (
        '{"action": "register_user", "payload": {"email": "a@b.ru", "referralCode": "X",'
        ' "referrerEmail": "c@d.ru"}}',
        JSON,
        422,
        "invalid_field",
        "payload.referrerEmail",
    ),
    "register without identity": (
        '{"action": "register_user", "payload": {"name": "A"}}',
        JSON,
        422,
        "missing_field",
        "payload.email",
    ),
    "missing payload": ('{"action": "purchase"}', JSON, 422, "missing_field", "payload"),
    "payload not object": (
        '{"action": "purchase", "payload": []}',
        JSON,
        422,
        "invalid_field",
        "payload",
    ),
    "standard missing amount": (
        standard(amount=None),
        JSON,
        422,
        "missing_field",
        "payload.amount",
    ),
    "standard negative amount": (standard(amount=-1), JSON, 422, "invalid_field", "payload.amount"),
    "standard non-numeric amount": (
        standard(amount="12abc"),
        JSON,
        422,
        "invalid_field",
        "payload.amount",
    ),
    "standard boolean amount": (
        standard(amount=True),
        JSON,
        422,
        "invalid_field",
        "payload.amount",
    ),
    "standard exponent string": (
        standard(amount="1e3"),
        JSON,
        422,
        "invalid_field",
        "payload.amount",
    ),
    "standard 13-digit amount": (
        standard(amount=1_000_000_000_000),
        JSON,
        422,
        "invalid_field",
        "payload.amount",
    ),
    "standard missing identity": (
        standard(email=None, phone=""),
        JSON,
        422,
        "missing_field",
        "payload.email",
    ),
    "standard bad email": (standard(email="nope"), JSON, 422, "invalid_field", "payload.email"),
    "standard bad phone": (standard(phone="12"), JSON, 422, "invalid_field", "payload.phone"),
    "standard missing order id": (
        standard(orderId=None),
        JSON,
        422,
        "missing_field",
        "payload.orderId",
    ),
    "standard long order id": (
        standard(orderId="x" * 129),
        JSON,
        422,
        "invalid_field",
        "payload.orderId",
    ),
    "standard float order id": (
        standard(orderId=1.5),
        JSON,
        422,
        "invalid_field",
        "payload.orderId",
    ),
    "standard non-string description": (
        standard(description=["x"]),
        JSON,
        422,
        "invalid_field",
        "payload.description",
    ),
    "tilda form missing amount": (
        TILDA_FORM.replace("&payment[amount]=24450", ""),
        FORM,
        422,
        "missing_field",
        "payment.amount",
    ),
    "tilda form negative amount": (
        TILDA_FORM.replace("amount]=24450", "amount]=-5"),
        FORM,
        422,
        "invalid_field",
        "payment.amount",
    ),
    "tilda form non-numeric amount": (
        TILDA_FORM.replace("amount]=24450", "amount]=24+450+руб"),
        FORM,
        422,
        "invalid_field",
        "payment.amount",
    ),
    "tilda form comma decimal": (
        TILDA_FORM.replace("amount]=24450", "amount]=24450,50"),
        FORM,
        422,
        "invalid_field",
        "payment.amount",
    ),
    "tilda missing order id": (
        dumps(order(payment=payment(orderid=None))),
        JSON,
        422,
        "missing_field",
        "payment.orderid",
    ),
    "tilda no payment": (dumps(order(payment=None)), JSON, 422, "missing_field", "payment.orderid"),
    "tilda missing identity": (
        dumps(order(Email=None, Phone=None)),
        JSON,
        422,
        "missing_field",
        "email",
    ),
    "tilda bad phone": (
        TILDA_FORM.replace("Phone=%2B7", "Phone=%2B7+9"),
        FORM,
        422,
        "invalid_field",
        "Phone",
    ),
    "tilda bad email": (dumps(order(Email="ivan@")), JSON, 422, "invalid_field", "Email"),
    "tilda bad product price": (
        dumps(order(payment=payment(products=[{"name": "A", "price": "x"}]))),
        JSON,
        422,
        "invalid_field",
        "payment.products[0].price",
    ),
    "tilda products not array": (
        dumps(order(payment=payment(products={"name": "A"}))),
        JSON,
        422,
        "invalid_field",
        "payment.products",
    ),
    "tilda product not object": (
        dumps(order(payment=payment(products=[1]))),
        JSON,
        422,
        "invalid_field",
        "payment.products[0]",
    ),
    "tilda too many products": (
        dumps(order(payment=payment(products=["A=1"] * (MAX_ITEMS + 1)))),
        JSON,
        422,
        "invalid_field",
        "payment.products",
    ),
    "tilda payment broken JSON string": (
        dumps(order(payment='{"amount": ')),
        JSON,
        422,
        "invalid_field",
        "payment",
    ),
    "tilda payment JSON string not object": (
        dumps(order(payment="[1]")),
        JSON,
        422,
        "invalid_field",
        "payment",
    ),
    "tilda array element missing amount": (
        dumps([order(), order(payment=payment(amount=None))]),
        JSON,
        422,
        "missing_field",
        "[1].payment.amount",
    ),
    "tilda array element not object": (dumps([order(), "x"]), JSON, 422, "invalid_field", "[1]"),
    "empty array": ("[]", JSON, 422, "invalid_field", None),
    "too many orders": (dumps([{}] * (MAX_ITEMS + 1)), JSON, 422, "invalid_field", None),
    "scalar body": ("42", JSON, 422, "invalid_field", None),
}


@pytest.mark.parametrize("body,content_type,status,code,field", ERRORS.values(), ids=ERRORS.keys())
def test_error_paths(
    body: bytes | str, content_type: str | None, status: int, code: str, field: str | None
) -> None:
    exc = error(body, content_type)
    assert (exc.status, exc.code) == (status, code), exc.reason
    assert exc.field == field
    assert exc.reason
    assert exc.to_dict() == {"error": code, "field": exc.field, "reason": exc.reason}


def test_error_reason_does_not_echo_huge_input() -> None:
    exc = error(dumps({"action": "x" * 100_000}))
    assert exc.code == "unknown_action"
    assert len(exc.reason) < 200
    assert "purchase" in exc.reason


def test_json_decode_error_has_position() -> None:
    assert "line 2" in error('{"action": "purchase",\n oops}').reason


def test_valid_bodies_are_not_mistaken_for_bombs() -> None:
    deep_but_fine = "[" * 32 + "]" * 32
    strings_with_brackets = dumps(order(Name="[[[[{{{{" * 20 + '\\"'))
    assert error(deep_but_fine).code == "invalid_field"  # parsed, then refused as no orders
    assert only(parse(strings_with_brackets)).name.startswith("[[[[")


def test_batch_lists_refused_items_and_keeps_the_rest_with_their_positions():
    body = {
        "action": "batch_purchase",
        "payload": {
            "purchases": [
                {"email": "a@example.com", "amount": 100, "orderId": "B-1"},
                {"email": "b@example.com", "amount": 100},
                {"email": "c@example.com", "amount": -1, "orderId": "B-3"},
                {"email": "a@example.com", "amount": 5, "orderId": "B-1"},
                {"phone": "8 (999) 123-45-67", "amount": "7.50", "orderId": 4},
            ]
        },
    }
    parsed = parse_webhook(json.dumps(body).encode(), JSON)
    assert parsed.action == "batch_purchase"
    assert [(p.index, p.order_id) for p in parsed.purchases] == [(0, "B-1"), (4, "4")]
    assert [(r.index, r.error, r.field) for r in parsed.rejected] == [
        (1, "missing_field", "payload.purchases[1].orderId"),
        (2, "invalid_field", "payload.purchases[2].amount"),
        (3, "invalid_field", "payload.purchases[3].orderId"),
    ]


def test_batch_of_ten_thousand_items_parses():
    items = [
        {"email": f"u{i}@example.com", "amount": i % 5000, "orderId": f"O-{i}"}
        for i in range(10_000)
    ]
    body = json.dumps({"action": "batch_purchase", "payload": {"purchases": items}})
    parsed = parse_webhook(body.encode(), JSON)
    assert len(parsed.purchases) == 10_000 and not parsed.rejected


def test_spend_refund_and_registration_payloads():
    spend = parse_webhook(
        b'{"action": "spend_bonuses", "payload": {"phone": "+7 999 123 45 67", "points": "300",'
        b' "orderId": "S-1", "orderAmount": 1500}}',
        JSON,
    ).request
    assert type(spend).__name__ == "Spend"
    assert (spend.points, spend.order_id, spend.order_amount) == (300, "S-1", Decimal(1500))
    refund = parse_webhook(
        b'{"action": "refund", "payload": {"orderId": "S-1", "refundId": "R-9"}}', JSON
    ).request
    assert (refund.order_id, refund.refund_id, refund.amount) == ("S-1", "R-9", None)
    reg = parse_webhook(
        b'{"action": "register_user", "payload": {"email": "New@Example.com", "name": "Ann",'
        b' "referralCode": "ab12cd34"}}',
        JSON,
    ).request
    assert (reg.email, reg.referrer_kind, reg.referrer) == ("new@example.com", "code", "AB12CD34")


VALID_BODIES = [
    *(
        pytest.param(body, content_type, id=name)
        for name, (body, content_type) in TILDA_VARIANTS.items()
    ),
    pytest.param(
        b'{"action":"batch_purchase","payload":{"purchases":[{"email":"a@example.com",'
        b'"amount":1,"orderId":"1"},{"amount":-1,"orderId":"2","email":"b@example.com"}]}}',
        JSON,
        id="batch",
    ),
    pytest.param(
        b'{"action":"purchase","payload":{"email":"a@example.com","amount":"1.50",'
        b'"orderId":"7","name":"A","description":"d"}}',
        JSON,
        id="standard",
    ),
]


@pytest.mark.parametrize("body,content_type", VALID_BODIES)
def test_parsed_models_equal_what_pydantic_validation_would_build(body, content_type):
    """The parser builds its models without pydantic's validation (model_construct): what it
    builds must be exactly what validation of the same values gives."""
    if isinstance(body, str):
        body = body.encode()
    parsed = parse_webhook(body, content_type)
    assert ParsedWebhook.model_validate(parsed.model_dump()) == parsed
    assert ParsedWebhook.model_validate_json(parsed.model_dump_json()) == parsed
