"""What one webhook body means, whatever format it came in: the canonical purchases and the
batch items refused, or the request of another action (its module's `ActionRequest`).

The wire models (`standard`, `tilda`) validate a body and turn into these; the ingress answers
from them and the stream normaliser builds its commands from them. Money is an exact `Decimal`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from schemas.frozen_copy import constructed
from schemas.inbound.request import ActionRequest


class Product(BaseModel):
    """One cart line as the shop sent it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    quantity: Decimal | None = None
    price: Decimal | None = None
    amount: Decimal | None = None


class Purchase(BaseModel):
    """A canonical purchase, whatever format it arrived in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: str
    amount: Decimal = Field(ge=0)
    email: str | None = None
    phone: str | None = None
    name: str | None = None
    description: str | None = None
    products: tuple[Product, ...] = ()
    source: Literal["standard", "tilda"]
    attributes: dict[str, str] = Field(default_factory=dict)
    index: int = Field(0, description="position in the request (batch item, Tilda array element)")


class ItemError(BaseModel):
    """One item of a batch that was refused, and why (the rest of the batch goes ahead)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    order_id: str | None = None
    error: str
    field: str | None = None
    reason: str


class ParsedWebhook(BaseModel):
    """The outcome of one request body: what to do, or Tilda's connection check.

    Built from wire models that pydantic validated, without a second validation (`parsed`,
    `purchase`); tests/schemas/test_inbound.py holds the results equal to validated models."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str = Field(description="the action's name (schemas.actions), or tilda_test")
    purchases: tuple[Purchase, ...] = ()
    rejected: tuple[ItemError, ...] = ()
    request: SerializeAsAny[ActionRequest] | None = Field(
        None, description="what any other action asks for (its module's request model)"
    )

    def claimed_order(self) -> str | None:
        """The order the request claims for its customer (a spend's), if any."""
        return self.request.claimed_order() if self.request is not None else None

    def owner_order(self) -> str | None:
        """The order whose owner the request concerns (a refund's), if any."""
        return self.request.owner_order() if self.request is not None else None


def parsed(
    action: str,
    purchases: tuple[Purchase, ...] = (),
    rejected: tuple[ItemError, ...] = (),
    request: ActionRequest | None = None,
) -> ParsedWebhook:
    """model_construct with every field given (schemas.frozen_copy.constructed: pydantic's
    own model_construct searches aliases and defaults field by field, dearer than validating)."""
    return constructed(
        ParsedWebhook,
        action=action,
        purchases=purchases,
        rejected=rejected,
        request=request,
    )


def purchase(
    *,
    order_id: str,
    amount: Decimal,
    source: str,
    email: str | None = None,
    phone: str | None = None,
    name: str | None = None,
    description: str | None = None,
    products: tuple[Product, ...] = (),
    attributes: dict[str, str] | None = None,
    index: int = 0,
) -> Purchase:
    """A Purchase of values a wire model validated."""
    return constructed(
        Purchase,
        order_id=order_id,
        amount=amount,
        email=email,
        phone=phone,
        name=name,
        description=description,
        products=products,
        source=source,
        attributes={} if attributes is None else attributes,
        index=index,
    )
