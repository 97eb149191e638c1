"""Inbound webhooks: every format Kopilka reads, described once by pydantic models that
validate a body and generate the OpenAPI request schemas.

- `body`: bytes to data (media type, charset, JSON with its depth guard, Tilda's bracket-key
  forms);
- `fields`: the value types (money, order id, email, phone, …) with their limits;
- `model`: the base model (field names in any case) and errors that name the field as sent;
- `envelope`: the standard ``{"action", "payload"}`` body's base model, and `ActionRequest`;
- `payloads`: what the standard payloads share (each action's own are in schemas.actions);
- `standard`: the standard JSON, through the actions' table;
- `tilda`: Tilda's orders, its quirks as pre-validators;
- `parsed`: what a body means (`ParsedWebhook`), whatever its format;
- `parse`: `parse_webhook`, the one entry point.
"""

from schemas.errors import InboundError
from schemas.inbound.fields import MAX_ITEMS
from schemas.inbound.parse import parse_webhook
from schemas.inbound.parsed import ItemError, ParsedWebhook, Product, Purchase
from schemas.inbound.request import ActionRequest
from schemas.inbound.tilda import TildaOrder, TildaOrders

__all__ = [
    "MAX_ITEMS",
    "ActionRequest",
    "InboundError",
    "ItemError",
    "ParsedWebhook",
    "Product",
    "Purchase",
    "TildaOrder",
    "TildaOrders",
    "parse_webhook",
]
