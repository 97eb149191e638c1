"""The `batch_purchase` action: up to 50,000 purchases in one body (4 MiB), each its own
purchase (schemas.actions.purchase), refused or accepted alone: a bad item is listed with its
reason and the rest go ahead; the same orderId twice refuses the second.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from schemas.actions.base import Action
from schemas.actions.purchase import PurchasePayload
from schemas.errors import InboundError
from schemas.inbound.envelope import Envelope
from schemas.inbound.fields import MAX_ITEMS, array, invalid
from schemas.inbound.model import Hit, InboundModel, join, refusal
from schemas.inbound.parsed import ItemError, ParsedWebhook, Purchase, parsed
from schemas.text_checks import check_tree


def _alone(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A batch item's own outcome: the validated payload, or the ValidationError refusing it."""
    try:
        return handler(value)
    except ValidationError as exc:
        return exc


def _purchases(value: Any) -> Any:
    if not array(value):
        raise invalid("must hold at least one purchase")
    return value


class BatchPayload(InboundModel):
    missing: ClassVar[dict[str, tuple[str, str]]] = {
        "purchases": ("missing_field", "purchases array is required")
    }
    children: ClassVar[dict[str, type[InboundModel]]] = {"purchases": PurchasePayload}

    purchases: Annotated[
        list[Annotated[PurchasePayload, WrapValidator(_alone)]],
        BeforeValidator(_purchases),
        Field(min_length=1, max_length=MAX_ITEMS),
    ]

    def outcomes(self) -> list[PurchasePayload | ValidationError]:
        """Each item: its payload, or the error refusing it."""
        return cast(list[PurchasePayload | ValidationError], self.purchases)


class BatchWebhook(Envelope):
    """Up to 50,000 purchases (4 MiB); each is its own purchase, refused or accepted alone."""

    children: ClassVar[dict[str, type[InboundModel]]] = {"payload": BatchPayload}

    action: Literal["batch_purchase"]
    payload: BatchPayload

    def parsed(self, obj: dict[str, Any], plain: bool) -> ParsedWebhook:
        return _batch(self, obj, plain)

    @classmethod
    def unchecked(cls, obj: dict[str, Any]) -> Hit | None:
        """The part of the body whose fields the items' own checks cover (its purchases)."""
        payload = cls.hits(obj).get("payload")
        return _items(payload) if payload is not None and isinstance(payload[1], dict) else None


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


ACTION = Action(webhook=BatchWebhook)  # its items are purchases: their command and rules
