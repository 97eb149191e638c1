"""Telegram message texts: readable Russian defaults per event type (each event type's own,
schemas.event_model), a tenant's own overrides.

Templates are `str.format` strings over a flat set of ready-formatted fields (below), e.g.
"Начислено {bonuses} за заказ {order_id}. Баланс: {balance}" gives "Начислено 250 бонусов за
заказ ORDER-123. Баланс: 1 250". Events are plain dicts: a field an event lacks is simply not
there, and a template that cannot be filled falls back to the default for the type, then to a
generic line, so rendering never loses or blocks a notification. Attribute and index look-ups
(`{x.__class__}`, `{x[0]}`) are refused: templates come from tenants.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from schemas.events import EVENT_TYPES

TELEGRAM_MAX_CHARS = 4096

# each event type's own text (schemas.event_model's `telegram`), and the outbound sinks' notice
DEFAULT_TEMPLATES: dict[str, str] = {
    **{kind: model.telegram for kind, model in EVENT_TYPES.items() if model.telegram},
    "endpoint_disabled": "Вебхук {url} отключён: {reason}. Включите его снова после исправления.",
}
GENERIC_TEMPLATE = "Событие «{type}» для клиента {customer}"

REASONS_RU = {
    "insufficient_balance": "недостаточно бонусов",
    "insufficient_points": "недостаточно бонусов",
    "max_spend_percent": "бонусами можно оплатить только часть заказа",
    "exceeds_max_spend_percent": "бонусами можно оплатить только часть заказа",
    "unknown_customer": "клиент не найден",
}

FIELDS = {
    "type": "event type",
    "event_id": "event id",
    "customer": "customer's email, else phone, else id",
    "customer_email": "",
    "customer_phone": "",
    "customer_id": "",
    "order_id": "",
    "amount": "purchase amount, e.g. 5 000",
    "points": "points as a number, e.g. 1 250",
    "bonuses": "points with the right Russian word, e.g. 250 бонусов",
    "balance": "balance after the event, e.g. 1 250",
    "lifetime_spend": "",
    "level": "",
    "previous_level": "",
    "reason": "why a spend was refused, in Russian when known",
    "referee_id": "",
    "referrer_id": "",
    "referral_code": "",
    "expires_at": "date the points expire, DD.MM.YYYY",
    "occurred_at": "DD.MM.YYYY HH:MM (UTC)",
    "url": "endpoint URL (endpoint_disabled)",
}


def group(number: int | Decimal) -> str:
    """1250 -> '1 250'; Decimal('1234.5') -> '1 234,50'."""
    if isinstance(number, Decimal) and number != number.to_integral_value():
        whole, frac = f"{number.quantize(Decimal('0.01')):,.2f}".split(".")
        return whole.replace(",", " ") + "," + frac
    return f"{int(number):,}".replace(",", " ")


def bonuses(n: int) -> str:
    """250 -> '250 бонусов', 1 -> '1 бонус', 3 -> '3 бонуса'."""
    tail, tens = abs(n) % 10, abs(n) % 100
    if tail == 1 and tens != 11:
        word = "бонус"
    elif 2 <= tail <= 4 and not 12 <= tens <= 14:
        word = "бонуса"
    else:
        word = "бонусов"
    return f"{group(n)} {word}"


def _date(value: Any, with_time: bool = False) -> str:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return when.strftime("%d.%m.%Y %H:%M" if with_time else "%d.%m.%Y")


def context(event: dict[str, Any]) -> dict[str, str]:
    """The template fields an event provides (only those it has)."""
    out: dict[str, str] = {}
    for key in ("type", "event_id", "order_id", "level", "previous_level", "referral_code"):
        if event.get(key) is not None:
            out[key] = str(event[key])
    for key in ("referee_id", "referrer_id", "url"):
        if event.get(key) is not None:
            out[key] = str(event[key])
    named = event.get("customer")
    customer: dict[str, Any] = named if isinstance(named, dict) else {}
    for key in ("id", "email", "phone"):
        if customer.get(key):
            out[f"customer_{key}"] = str(customer[key])
    who = customer.get("email") or customer.get("phone") or customer.get("id")
    if who:
        out["customer"] = str(who)
    if isinstance(event.get("points"), int):
        out["points"], out["bonuses"] = group(event["points"]), bonuses(event["points"])
    if isinstance(event.get("balance_after"), int):
        out["balance"] = group(event["balance_after"])
    for key in ("amount", "lifetime_spend"):
        if event.get(key) is not None:
            try:
                out[key] = group(Decimal(str(event[key])))
            except InvalidOperation:
                out[key] = str(event[key])
    if event.get("reason") is not None:
        out["reason"] = REASONS_RU.get(str(event["reason"]), str(event["reason"]))
    if event.get("expires_at"):
        out["expires_at"] = _date(event["expires_at"])
    if event.get("occurred_at"):
        out["occurred_at"] = _date(event["occurred_at"], with_time=True)
    return out


class _Formatter(string.Formatter):
    def get_field(
        self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Any, str]:
        if not field_name.isidentifier():
            raise KeyError(field_name)  # no {0}, {x.attr}, {x[key]}
        return kwargs[field_name], field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec:
            raise ValueError("format specs are not supported")
        return str(value)


_FORMATTER = _Formatter()


def check_template(template: str) -> str | None:
    """Why a tenant's template is unusable, or None."""
    try:
        names = [name for _, name, spec, conv in _FORMATTER.parse(template) if name is not None]
    except ValueError as exc:
        return f"not a valid template: {exc}"
    for name in names:
        if name not in FIELDS:
            return f"unknown field {{{name}}}; known: {', '.join(sorted(FIELDS))}"
    if len(template) > TELEGRAM_MAX_CHARS:
        return f"longer than {TELEGRAM_MAX_CHARS} characters"
    return None


def render(event: dict[str, Any], override: str | None = None) -> str:
    """The message for an event: the tenant's template, else the default, else a generic line."""
    fields = context(event)
    kind = str(event.get("type", ""))
    candidates = [t for t in (override, DEFAULT_TEMPLATES.get(kind)) if t]
    for template in [*candidates, GENERIC_TEMPLATE]:
        try:
            text = _FORMATTER.vformat(template, (), fields)
        except (KeyError, ValueError, IndexError):
            continue
        return text[:TELEGRAM_MAX_CHARS]
    return f"Событие «{kind or 'unknown'}»"
