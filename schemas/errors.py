"""The one refusal of an inbound body: HTTP status, machine code, field and reason."""

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
