"""Refusals: of an inbound body by the ingress (`InboundError`: HTTP status, machine code, field
and reason), and of a request by the worker (`Refused`)."""

from __future__ import annotations


class InboundError(Exception):
    """A body Kopilka refuses, with the HTTP status, a machine code, the field and a reason."""

    def __init__(self, status: int, code: str, reason: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.status = status
        self.code = code
        self.field = field
        self.reason = reason

    def to_dict(self) -> dict[str, str | None]:
        """The JSON error body: ``{"error": code, "field": field, "reason": reason}``."""
        return {"error": self.code, "field": self.field, "reason": self.reason}


class Refused(Exception):
    """A request (or a batch item) the worker cannot carry out: `code` and `reason` say why
    (its `rejected` outcome and dead letter); `waiting_for` names what may still come (a
    refund's order not claimed yet, or "referrer"), so it is tried again later."""

    def __init__(
        self, code: str, reason: str, field: str | None = None, waiting_for: str | None = None
    ) -> None:
        super().__init__(reason)
        self.code, self.reason, self.field, self.waiting_for = code, reason, field, waiting_for


def claimed_by_another(order_id: str) -> Refused:
    return Refused(
        "order_of_another_customer",
        f"order {order_id!r} already belongs to another customer",
        "orderId",
    )
