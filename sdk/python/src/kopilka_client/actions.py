"""The typed method of every webhook action, written once for both clients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from kopilka_client import payloads

R = TypeVar("R")


class Actions(Generic[R]):
    """One typed method per action, on top of `send`: `R` is `Receipt` for the sync client and
    `Awaitable[Receipt]` for the async one, so the two share these signatures."""

    def send(
        self, body: Mapping[str, Any], *, wait: float | None = None, webhook_id: str | None = None
    ) -> R:
        raise NotImplementedError

    def purchase(
        self,
        *,
        order_id: str | int,
        amount: payloads.Money,
        email: str | None = None,
        phone: str | None = None,
        name: str | None = None,
        description: str | None = None,
        wait: float | None = None,
    ) -> R:
        """Award points for an order: once per order, however often it is sent."""
        body = payloads.purchase(
            order_id=order_id,
            amount=amount,
            email=email,
            phone=phone,
            name=name,
            description=description,
        )
        return self.send(body, wait=wait)

    def batch_purchase(self, purchases: list[dict[str, Any]], *, wait: float | None = None) -> R:
        """Many purchases in one request (each item: `purchase`'s keyword arguments)."""
        return self.send(payloads.batch_purchase(purchases), wait=wait)

    def register_user(
        self,
        *,
        email: str | None = None,
        phone: str | None = None,
        name: str | None = None,
        referral_code: str | None = None,
        referrer_email: str | None = None,
        referrer_phone: str | None = None,
        wait: float | None = None,
    ) -> R:
        body = payloads.register_user(
            email=email,
            phone=phone,
            name=name,
            referral_code=referral_code,
            referrer_email=referrer_email,
            referrer_phone=referrer_phone,
        )
        return self.send(body, wait=wait)

    def spend(
        self,
        *,
        order_id: str | int,
        points: int,
        email: str | None = None,
        phone: str | None = None,
        order_amount: payloads.Money | None = None,
        wait: float | None = None,
    ) -> R:
        """Pay with points. With `wait=N` the receipt's `outcome` says whether it was applied or
        why it was rejected (`insufficient_balance`, `over_max_percent`, ...)."""
        body = payloads.spend_bonuses(
            order_id=order_id, points=points, email=email, phone=phone, order_amount=order_amount
        )
        return self.send(body, wait=wait)

    def refund(
        self,
        *,
        order_id: str | int,
        amount: payloads.Money | None = None,
        refund_id: str | int | None = None,
        wait: float | None = None,
    ) -> R:
        """A full refund without `amount`; partial refunds of one amount need distinct ids."""
        return self.send(
            payloads.refund(order_id=order_id, amount=amount, refund_id=refund_id), wait=wait
        )
