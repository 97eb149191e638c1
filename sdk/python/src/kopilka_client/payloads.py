"""Kopilka's standard webhook bodies, one builder per action, and their idempotency keys.

A body is `{"action": A, "payload": {...}}` (see Kopilka's README, "Actions"). Money may be an
`int`, a `Decimal` or a numeric string and is sent as an exact string (never a float); points
are integers. Optional fields left as None are not sent. Kopilka validates; the builders only
shape.

`delivery_id` derives the Standard Webhooks `webhook-id` from what makes a request the same
request to Kopilka, so every retry of it carries the same id and Kopilka answers a repeat
`duplicate` instead of storing it twice:

- purchase: the order (Kopilka awards once per order whatever the body says);
- spend: the order, the points and the order amount (a refused spend may be sent again for
  the same order with other figures; that one is a new request);
- refund: the order and the refund id, else the amount (Kopilka's own refund identity);
- register: the email, the phone and the referrer;
- batch: every item's order id, in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

Money = int | str | Decimal
ACTIONS = ("purchase", "batch_purchase", "register_user", "spend_bonuses", "refund")


def _money(value: Money) -> str | int:
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError("pass money as an int, a Decimal or a numeric string, never a float")
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def _compact(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def purchase_payload(
    *,
    order_id: str | int,
    amount: Money,
    email: str | None = None,
    phone: str | None = None,
    name: str | None = None,
    description: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return _compact(
        {
            "email": email,
            "phone": phone,
            "amount": _money(amount),
            "orderId": order_id,
            "name": name,
            "description": description,
            **extra,
        }
    )


def purchase(**fields: Any) -> dict[str, Any]:
    return {"action": "purchase", "payload": purchase_payload(**fields)}


def batch_purchase(purchases: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Each item: the keyword arguments of `purchase` (`order_id`, `amount`, `email`, ...)."""
    items = [purchase_payload(**item) for item in purchases]
    return {"action": "batch_purchase", "payload": {"purchases": items}}


def register_user(
    *,
    email: str | None = None,
    phone: str | None = None,
    name: str | None = None,
    referral_code: str | None = None,
    referrer_email: str | None = None,
    referrer_phone: str | None = None,
) -> dict[str, Any]:
    payload = {
        "email": email,
        "phone": phone,
        "name": name,
        "referralCode": referral_code,
        "referrerEmail": referrer_email,
        "referrerPhone": referrer_phone,
    }
    return {"action": "register_user", "payload": _compact(payload)}


def spend_bonuses(
    *,
    order_id: str | int,
    points: int,
    email: str | None = None,
    phone: str | None = None,
    order_amount: Money | None = None,
) -> dict[str, Any]:
    payload = {
        "email": email,
        "phone": phone,
        "points": points,
        "orderId": order_id,
        "orderAmount": None if order_amount is None else _money(order_amount),
    }
    return {"action": "spend_bonuses", "payload": _compact(payload)}


def refund(
    *, order_id: str | int, amount: Money | None = None, refund_id: str | int | None = None
) -> dict[str, Any]:
    payload = {
        "orderId": order_id,
        "amount": None if amount is None else _money(amount),
        "refundId": refund_id,
    }
    return {"action": "refund", "payload": _compact(payload)}


def delivery_id(body: Mapping[str, Any]) -> str:
    """The `webhook-id` for a standard body: the same for every retry of the same request."""
    action = body.get("action")
    payload = body.get("payload") or {}
    if action == "purchase":
        parts = [payload.get("orderId")]
    elif action == "spend_bonuses":
        parts = [payload.get("orderId"), payload.get("points"), payload.get("orderAmount")]
    elif action == "refund":
        refund_id = payload.get("refundId")
        parts = [payload.get("orderId"), "id", refund_id] if refund_id is not None else []
        parts = parts or [payload.get("orderId"), "amount", payload.get("amount")]
    elif action == "register_user":
        parts = [
            payload.get(k)
            for k in ("email", "phone", "referralCode", "referrerEmail", "referrerPhone")
        ]
    elif action == "batch_purchase":
        parts = [item.get("orderId") for item in payload.get("purchases", [])]
    else:
        raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    text = "\x1f".join([str(action), *("" if p is None else str(p) for p in parts)])
    return "kc_" + hashlib.sha256(text.encode()).hexdigest()[:40]
