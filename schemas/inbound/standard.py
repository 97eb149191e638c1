"""Kopilka's standard JSON: ``{"action": ..., "payload": {...}}``, one envelope model per
action around its payload model (`payloads`).

The models validate the body and are the OpenAPI document's request schemas. The action is
read stripped and in any case; the payload's field names in any case. A batch's purchases are
validated one by one: a bad one is refused alone, with its reason, and the rest go ahead.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, cast

from pydantic import ConfigDict, ValidationError

from schemas.errors import InboundError
from schemas.inbound.model import Hit, InboundModel, join, refusal
from schemas.inbound.parsed import ItemError, ParsedWebhook, Purchase, parsed
from schemas.inbound.payloads import (
    BatchPayload,
    PurchasePayload,
    RefundPayload,
    RegisterPayload,
    SpendPayload,
)
from schemas.text_checks import check_tree

SUPPORTED_ACTIONS = ("purchase", "batch_purchase", "register_user", "spend_bonuses", "refund")


class Envelope(InboundModel):
    """``{"action": ..., "payload": {...}}``; the action is read stripped, in any case."""

    missing: ClassVar[dict[str, tuple[str, str]]] = {
        "payload": ("missing_field", "payload object is required")
    }

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        values = cls.values(data)
        values["action"] = action_name(data.get("action"))
        return values


class StandardWebhook(Envelope):
    """Kopilka's standard JSON: an action and its payload (here: a purchase)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "action": "purchase",
                    "payload": {
                        "email": "anna@example.com",
                        "amount": 5000,
                        "orderId": "ORDER-1",
                        "description": "Order #1",
                    },
                }
            ]
        }
    )
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": PurchasePayload}

    action: Literal["purchase"]
    payload: PurchasePayload

    def parsed(self) -> ParsedWebhook:
        return parsed("purchase", purchases=(self.payload.purchase(),))


class BatchWebhook(Envelope):
    """Up to 50,000 purchases (4 MiB); each is its own purchase, refused or accepted alone."""

    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": BatchPayload}

    action: Literal["batch_purchase"]
    payload: BatchPayload


class RegisterWebhook(Envelope):
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": RegisterPayload}

    action: Literal["register_user"]
    payload: RegisterPayload

    def parsed(self) -> ParsedWebhook:
        return parsed("register_user", registration=self.payload.registration())


class SpendWebhook(Envelope):
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": SpendPayload}

    action: Literal["spend_bonuses"]
    payload: SpendPayload

    def parsed(self) -> ParsedWebhook:
        return parsed("spend_bonuses", spend=self.payload.spend())


class RefundWebhook(Envelope):
    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": RefundPayload}

    action: Literal["refund"]
    payload: RefundPayload

    def parsed(self) -> ParsedWebhook:
        return parsed("refund", refund=self.payload.refund())


WEBHOOKS: dict[str, type[Envelope]] = {
    "purchase": StandardWebhook,
    "batch_purchase": BatchWebhook,
    "register_user": RegisterWebhook,
    "spend_bonuses": SpendWebhook,
    "refund": RefundWebhook,
}


def action_name(action: Any) -> str | None:
    return action.strip().lower() if isinstance(action, str) else None


def parse_standard(obj: dict[str, Any], region: str, plain: bool = False) -> ParsedWebhook:
    """A standard body (`obj` has "action"). `plain`: the JSON text holds no character the
    field checks refuse (`text_checks.plain_json`), so the walk over every field is skipped."""
    action = obj["action"]
    name = action_name(action)
    if name not in SUPPORTED_ACTIONS:
        shown = repr(action[:40]) if isinstance(action, str) else "of this type"
        raise InboundError(
            422,
            "unknown_action",
            f"unknown action {shown}; supported: {', '.join(SUPPORTED_ACTIONS)}",
            "action",
        )
    model = WEBHOOKS[name]
    payload = None if plain else model.hits(obj).get("payload")
    if payload is not None and isinstance(payload[1], dict):
        # batch items are checked one by one (a bad one is refused alone)
        items = _items(payload) if name == "batch_purchase" else None
        check_tree(obj, skip=frozenset({items[0]}) if items else frozenset())
    try:
        webhook = model.model_validate(obj, context={"region": region})
    except ValidationError as exc:
        raise refusal(exc, model, obj) from None
    if isinstance(webhook, BatchWebhook):
        return _batch(webhook, obj, plain)
    return cast(StandardWebhook, webhook).parsed()


def _items(payload: Hit) -> Hit | None:
    """(path of the batch's purchases as sent, the raw items)."""
    hit = BatchPayload.hits(payload[1]).get("purchases")
    return None if hit is None else (join(payload[0], hit[0]), hit[1])


def _batch(webhook: BatchWebhook, obj: dict[str, Any], plain: bool) -> ParsedWebhook:
    """Each item is its own purchase: bad items are listed with their reason, the rest go."""
    payload = BatchWebhook.hits(obj)["payload"]
    base, raw_items = cast(Hit, _items(payload))
    purchases: list[Purchase] = []
    rejected: list[ItemError] = []
    seen: set[str] = set()
    for i, (raw, item) in enumerate(zip(raw_items, webhook.payload.outcomes(), strict=True)):
        path = f"{base}[{i}]"
        order_id = None
        try:
            if not isinstance(raw, dict):
                raise InboundError(422, "invalid_field", "each purchase must be an object", path)
            if not plain:
                check_tree(raw, path + ".")
            if isinstance(item, ValidationError):
                raise refusal(item, BatchWebhook, obj, ("payload", "purchases", i))
            bought = item.purchase(index=i)
            order_id = bought.order_id
            if order_id in seen:
                key = PurchasePayload.hits(raw)["orderId"][0]
                raise InboundError(
                    422, "invalid_field", "the same orderId appears earlier", join(path, key)
                )
        except InboundError as exc:
            rejected.append(
                ItemError(
                    index=i, order_id=order_id, error=exc.code, field=exc.field, reason=exc.reason
                )
            )
            continue
        seen.add(order_id)
        purchases.append(bought)
    if not purchases:
        first = rejected[0]
        raise InboundError(
            422,
            first.error,
            f"no purchase in the batch is valid; first: {first.reason}",
            first.field,
        )
    return parsed("batch_purchase", purchases=tuple(purchases), rejected=tuple(rejected))
