"""The edge refuses text the core cannot hold: control characters and invalid Unicode, in any
field of any action and format, as 422 naming the field; and no body at all makes parsing fail
with anything but a 4xx."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.inbound import InboundError, ParsedWebhook, parse_webhook
from schemas.text_checks import check_tree, identifier, plain_json, shown

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

# A valid body of every action and format. Each has string leaves a shop fills in.
STANDARD = {
    "purchase": {
        "action": "purchase",
        "payload": {
            "email": "ann@example.com",
            "phone": "+7 999 111-22-33",
            "orderId": "A-1",
            "amount": "1500.50",
            "name": "Ann Lee",
            "description": "two chairs",
            "note": "an extra field nobody reads",
        },
    },
    "register_user": {
        "action": "register_user",
        "payload": {"email": "bob@example.com", "name": "Bob", "referralCode": "ABC123"},
    },
    "spend_bonuses": {
        "action": "spend_bonuses",
        "payload": {"phone": "89991112233", "orderId": "S-1", "points": "10", "orderAmount": "99"},
    },
    "refund": {
        "action": "refund",
        "payload": {"orderId": "A-1", "refundId": "R-1", "amount": "10.5"},
    },
}
TILDA = [
    {
        "Name": "Иван",
        "Email": "ivan@example.com",
        "Phone": "+7 (999) 111-22-33",
        "payment": {
            "orderid": "1557604691",
            "amount": "24450",
            "products": [{"name": "Кресло", "quantity": "1", "price": "24450"}, "Стол=1000"],
            "promocode": "SALE",
        },
        "formid": "form42581206",
        "COOKIES": "TILDAUTM=utm_source%3Dgoogle",
        "comment": "free text",
    }
]
BAD_CHARS = st.one_of(
    st.integers(0x00, 0x08),
    st.integers(0x0B, 0x0C),
    st.integers(0x0E, 0x1F),
    st.integers(0x7F, 0x9F),
    st.integers(0xD800, 0xDFFF),
).map(chr)
CONTROLS = BAD_CHARS.filter(lambda ch: ord(ch) < 0xD800)


def leaves(node: Any, path: str = "") -> list[str]:
    """Dotted paths of every string leaf, as the parser names fields."""
    if isinstance(node, str):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in leaves(v, f"{path}.{k}" if path else k)]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in leaves(v, f"{path}[{i}]")]
    return []


def put(node: Any, path: str, change) -> Any:
    """A copy of `node` with the string at `path` replaced by change(old)."""
    node = json.loads(json.dumps(node))
    parts = path.replace("[", ".[").split(".")
    parts = [p for p in parts if p]
    parent = node
    for part in parts[:-1]:
        parent = parent[int(part[1:-1])] if part.startswith("[") else parent[part]
    last = parts[-1]
    key: Any = int(last[1:-1]) if last.startswith("[") else last
    parent[key] = change(parent[key])
    return node


def refusal(body: bytes, content_type: str | None = JSON) -> InboundError:
    with pytest.raises(InboundError) as info:
        parse_webhook(body, content_type)
    return info.value


def inject(text: str, ch: str, where: int) -> str:
    where = where % (len(text) + 1)
    return text[:where] + ch + text[where:]


CASES = [(name, body, path) for name, body in STANDARD.items() for path in leaves(body)]
CASES += [("tilda", TILDA, path) for path in leaves(TILDA)]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), ch=BAD_CHARS, where=st.integers(0, 64))
def test_a_bad_character_in_any_json_field_is_a_422_naming_it(case, ch, where):
    _, body, path = case
    bad = put(body, path, lambda old: inject(old, ch, where))
    exc = refusal(json.dumps(bad).encode())  # ensure_ascii: surrogates travel as \ud800
    assert exc.status == 422
    assert exc.field == path, exc.reason
    assert exc.code in ("invalid_field", "unknown_action")  # "action" names it its own way


# DEL, C1 and bytes that are not UTF-8 (json.dumps escapes C0 even without ensure_ascii, and
# raw C0 inside a JSON string is malformed JSON: 400 before any field check)
RAW_BAD = st.one_of(st.integers(0x7F, 0x9F), st.integers(0xDC80, 0xDCFF)).map(chr)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), ch=RAW_BAD, where=st.integers(0, 64))
def test_a_raw_bad_character_is_found_as_well_as_an_escaped_one(case, ch, where):
    """JSON without escapes skips the walk over every field (`plain_json`): a bad character
    written raw (in UTF-8, or a byte that is not UTF-8) must still be refused, naming its field."""
    _, body, path = case
    bad = put(body, path, lambda old: inject(old, ch, where))
    text = json.dumps(bad, ensure_ascii=False)
    exc = refusal(text.encode("utf-8", "surrogateescape"))
    assert exc.status == 422
    assert exc.field == path, exc.reason
    assert exc.code in ("invalid_field", "unknown_action")


def test_plain_json_is_only_text_without_escapes_or_bad_characters():
    assert plain_json('{"a": "b\u00e9c", "n": 1.5}')
    assert not plain_json('{"a": "\\u0000"}')
    assert not plain_json('{"a": "x\x85y"}')
    assert not plain_json('{"a": "x\udc80y"}')
    assert plain_json('{"a":\t"tab outside a string"}')


@settings(max_examples=100)
@given(leaf=st.sampled_from(leaves(TILDA[0]["payment"])), ch=BAD_CHARS, where=st.integers(0, 64))
def test_a_bad_character_in_tildas_payment_json_string_names_the_field(leaf, ch, where):
    order = dict(TILDA[0])
    payment = put(order["payment"], leaf, lambda old: inject(old, ch, where))
    order["payment"] = json.dumps(payment)
    exc = refusal(json.dumps([order]).encode())
    assert (exc.status, exc.field) == (422, f"[0].payment.{leaf}"), exc.reason


FORM_FIELDS = {
    "Name": "Иван",
    "Email": "ivan@example.com",
    "Phone": "+7 (999) 111-22-33",
    "payment[orderid]": "1557604691",
    "payment[amount]": "24450",
    "payment[products][0][name]": "Кресло",
    "payment[products][0][price]": "24450",
    "formname": "Cart",
}


def form_path(key: str) -> str:
    head, _, rest = key.partition("[")
    parts = [head, *rest.rstrip("]").split("][")] if rest else [head]
    out = parts[0]
    for part in parts[1:]:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


@settings(max_examples=200)
@given(key=st.sampled_from(sorted(FORM_FIELDS)), ch=CONTROLS, where=st.integers(0, 64))
def test_a_control_character_in_any_form_field_is_a_422_naming_it(key, ch, where):
    fields = {**FORM_FIELDS, key: inject(FORM_FIELDS[key], ch, where)}
    body = "&".join(f"{quote(k)}={quote(v)}" for k, v in fields.items()).encode()
    exc = refusal(body, FORM)
    assert (exc.status, exc.field) == (422, form_path(key)), exc.reason


@settings(max_examples=100)
@given(item=st.integers(0, 2), ch=BAD_CHARS, field=st.sampled_from(["orderId", "name", "email"]))
def test_a_bad_batch_item_is_refused_alone_naming_its_field(item, ch, field):
    items = [
        {"email": f"c{i}@example.com", "orderId": f"B-{i}", "amount": 100, "name": "C"}
        for i in range(3)
    ]
    items[item][field] = inject(items[item][field], ch, 1)
    body = {"action": "batch_purchase", "payload": {"purchases": items}}
    parsed = parse_webhook(json.dumps(body).encode(), JSON)
    assert [p.index for p in parsed.purchases] == [i for i in range(3) if i != item]
    [rejected] = parsed.rejected
    assert (rejected.index, rejected.field) == (item, f"payload.purchases[{item}].{field}")


def test_a_batch_whose_every_item_is_bad_is_a_422_naming_the_first():
    items = [{"email": "a@example.com", "orderId": "X\x00", "amount": 1}] * 2
    body = {"action": "batch_purchase", "payload": {"purchases": items}}
    exc = refusal(json.dumps(body).encode())
    assert (exc.status, exc.field) == (422, "payload.purchases[0].orderId")


@pytest.mark.parametrize(
    "body,field",
    [
        (b'{"action":"purchase","payload":{"na\\u0000me":"x"}}', "payload.na\\u0000me"),
        (b'{"action":"purchase","payload":{"\\ud800":"x"}}', "payload.\\ud800"),
        (b'{"action":"purchase","payload":{"a\\tb":"x"}}', "payload.a\\u0009b"),
        (b'[{"\\u0001":1}]', "[0].\\u0001"),
    ],
)
def test_a_bad_field_name_is_refused_and_shown_escaped(body, field):
    exc = refusal(body)
    assert (exc.status, exc.field) == (422, field)
    assert "field name" in exc.reason


@pytest.mark.parametrize(
    "body,content_type,field",
    [
        (b'{"action":"refund","payload":{"orderId":"A\xff"}}', JSON, "payload.orderId"),
        (b'{"action":"purchase","payload":{"name":"\xc3"}}', JSON, "payload.name"),
        (
            b'[{"email":"a@example.com","payment":{"orderid":"1","amount":"\xe2\x82"}}]',
            JSON,
            "[0].payment.amount",
        ),
        (b"Name=%C3&Email=a@example.com", FORM, "Name"),
        (b"Name=\xc3&Email=a@example.com", FORM, "Name"),
    ],
)
def test_bytes_that_are_not_utf8_are_a_422_naming_the_field(body, content_type, field):
    exc = refusal(body, content_type)
    assert (exc.status, exc.field) == (422, field)
    assert "not UTF-8" in exc.reason


def test_a_non_utf8_charset_still_decodes_strictly():
    body = "Name=Иван&Email=a@example.com&payment[orderid]=1&payment[amount]=5"
    parsed = parse_webhook(body.encode("cp1251"), f"{FORM}; charset=windows-1251")
    assert parsed.purchases[0].name == "Иван"


def test_cookie_utm_that_decodes_to_a_control_character_is_refused():
    order = {**TILDA[0], "COOKIES": "TILDAUTM=utm_source%3Dgo%00ogle"}
    exc = refusal(json.dumps([order]).encode())
    assert (exc.status, exc.field) == (422, "[0].COOKIES")


def test_tab_newline_and_carriage_return_are_kept_in_free_text():
    body = put(STANDARD["purchase"], "payload.description", lambda _: "line 1\r\nline\t2")
    parsed = parse_webhook(json.dumps(body).encode(), JSON)
    assert parsed.purchases[0].description == "line 1\r\nline\t2"
    body = put(STANDARD["purchase"], "payload.name", lambda _: "Ann\tLee")
    assert parse_webhook(json.dumps(body).encode(), JSON).purchases[0].name == "Ann\tLee"


@pytest.mark.parametrize(
    "action,path",
    [
        ("purchase", "payload.orderId"),
        ("refund", "payload.orderId"),
        ("refund", "payload.refundId"),
        ("spend_bonuses", "payload.orderId"),
        ("register_user", "payload.referralCode"),
    ],
)
@pytest.mark.parametrize("ch", ["\t", "\n", "\r"])
def test_identifiers_refuse_tab_and_newlines_inside(action, path, ch):
    body = put(STANDARD[action], path, lambda old: old[:1] + ch + old[1:])
    exc = refusal(json.dumps(body).encode())
    assert (exc.status, exc.field) == (422, path)
    body = put(STANDARD[action], path, lambda old: f"{ch}{old}{ch}")  # around: stripped
    assert isinstance(parse_webhook(json.dumps(body).encode(), JSON), ParsedWebhook)


def test_a_surrogate_pair_is_one_valid_character():
    body = put(STANDARD["purchase"], "payload.name", lambda _: "\U0001f600 smile")
    assert parse_webhook(json.dumps(body).encode(), JSON).purchases[0].name == "\U0001f600 smile"


def test_helpers():
    assert shown("a\x00b\ud800") == "a\\u0000b\\ud800"
    assert len(shown("x" * 500)) == 80
    assert identifier("f", "ok id") == "ok id"
    check_tree({"a": ["ok", {"b": "fine\n"}]})
    with pytest.raises(InboundError) as info:
        check_tree({"a": ["ok", {"b": "bad\x1b"}]}, "payload.")
    assert info.value.field == "payload.a[1].b"


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(st.tuples(st.text(max_size=12), st.text(max_size=6)), max_size=5).map(
            lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=10), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps({"action": "purchase", "payload": v}).encode()),
    ),
    content_type=st.sampled_from([None, JSON, FORM, "text/plain", f"{JSON}; charset=latin-1"]),
)
def test_no_body_makes_parsing_fail_other_than_with_a_4xx(body, content_type):
    try:
        parse_webhook(body, content_type)
    except InboundError as exc:
        assert 400 <= exc.status < 500
        # the refusal goes to the shop and to the audit table: it must itself be storable
        for text in (exc.field or "", exc.reason):
            assert not re.search("[\x00\ud800-\udfff]", text), exc.to_dict()


def test_form_structure_errors_show_field_names_escaped():
    exc = refusal(b"a%00=1&a%00[b]=2", FORM)
    assert (exc.status, exc.code, exc.field) == (400, "malformed_form", "a\\u0000[b]")
