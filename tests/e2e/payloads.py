"""Request bodies shops send, shared by the end-to-end tests."""

from __future__ import annotations

TILDA_FORM = {
    "Name": "Иван Петров",
    "Phone": "8 (999) 111-22-33",
    "Email": "Ivan.Petrov@Example.com",
    "payment[orderid]": "1557604691",
    "payment[amount]": "24450",
    "payment[products][0][name]": "Кресло",
    "payment[products][0][quantity]": "1",
    "payment[products][0][price]": "24450",
    "formid": "form42581206",
    "formname": "Cart",
}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def purchase(order_id: str, amount, *, email=None, phone=None) -> dict:
    payload = {"orderId": order_id, "amount": amount, "description": "test order"}
    if email:
        payload["email"] = email
    if phone:
        payload["phone"] = phone
    return {"action": "purchase", "payload": payload}


def action(kind: str, /, **payload) -> dict:
    return {"action": kind, "payload": payload}


WAIT = {"Prefer": "wait=5"}
