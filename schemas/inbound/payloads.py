"""What the payloads of Kopilka's standard JSON share; each action's own payload model is in its
module (schemas.actions).

Field names are read in any case (`model.InboundModel`); the customer is named by ``email``
and/or ``phone`` (`Identified`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from schemas.inbound.fields import Check, Email, Phone, Refusal
from schemas.inbound.model import InboundModel

_NO_IDENTITY = Refusal("missing_field", "an email or a phone is required", "email")
ORDER_MISSING = ("missing_field", "order id is required")


class Identified(InboundModel):
    """A payload naming the customer by email and/or phone (at least one)."""

    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["email"]}, {"required": ["phone"]}]}
    )
    hidden: ClassVar[frozenset[str]] = frozenset({"identity"})

    email: Email | None = Field(None, examples=["anna@example.com"])
    phone: Phone | None = Field(None, examples=["+7 999 123-45-67"])
    identity: Check = None

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        values = cls.values(data)
        if "email" not in values and "phone" not in values:
            values["identity"] = _NO_IDENTITY
        return values
