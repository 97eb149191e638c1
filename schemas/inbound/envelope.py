"""Kopilka's standard JSON is ``{"action": ..., "payload": {...}}``: `Envelope` is the model of
every action's body; each action's module (schemas.actions) subclasses it with its
``action: Literal[...]`` and its payload model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from schemas.inbound.model import Hit, InboundModel

if TYPE_CHECKING:
    from schemas.inbound.parsed import ParsedWebhook


def action_name(action: Any) -> str | None:
    return action.strip().lower() if isinstance(action, str) else None


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

    @classmethod
    def named(cls) -> str:
        """The action this model is the body of (its ``action`` literal)."""
        return str(cls.model_fields["action"].annotation.__args__[0])  # type: ignore[union-attr]

    @classmethod
    def unchecked(cls, obj: dict[str, Any]) -> Hit | None:
        """A part of the body (path as sent, value) left to its items' own checks, so that a
        bad item is refused alone (a batch's purchases); None: the whole body is checked."""
        return None

    def parsed(self, obj: dict[str, Any], plain: bool) -> ParsedWebhook:
        """What the body means; `obj` is the body as sent, `plain` says its text needed no
        check of each field (schemas.text_checks.plain_json)."""
        raise NotImplementedError
