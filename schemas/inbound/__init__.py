"""Inbound webhooks: every format Kopilka reads, described once by pydantic models that
validate a body and generate the OpenAPI request schemas.

- `body`: bytes to data (media type, charset, JSON with its depth guard, Tilda's bracket-key
  forms);
- `fields`: the value types (money, order id, email, phone, …) with their limits;
- `model`: the base model (field names in any case) and errors that name the field as sent;
- `standard`: Kopilka's ``{"action", "payload"}`` JSON, one model per action;
- `tilda`: Tilda's orders, its quirks as pre-validators;
- `parsed`: what a body means (`ParsedWebhook`), whatever its format;
- `parse`: `parse_webhook`, the one entry point.
"""

from schemas.errors import InboundError
from schemas.inbound.fields import MAX_ITEMS
from schemas.inbound.parse import parse_webhook
from schemas.inbound.parsed import (
    Action,
    ItemError,
    ParsedWebhook,
    Product,
    Purchase,
    ReferrerKind,
    Refund,
    Registration,
    Spend,
)
from schemas.inbound.standard import (
    SUPPORTED_ACTIONS,
    BatchWebhook,
    RefundWebhook,
    RegisterWebhook,
    SpendWebhook,
    StandardWebhook,
)
from schemas.inbound.tilda import TildaOrder, TildaOrders

__all__ = [
    "MAX_ITEMS",
    "SUPPORTED_ACTIONS",
    "Action",
    "BatchWebhook",
    "InboundError",
    "ItemError",
    "ParsedWebhook",
    "Product",
    "Purchase",
    "ReferrerKind",
    "Refund",
    "RefundWebhook",
    "RegisterWebhook",
    "Registration",
    "Spend",
    "SpendWebhook",
    "StandardWebhook",
    "TildaOrder",
    "TildaOrders",
    "parse_webhook",
]
