"""Kopilka's standard JSON is ``{"action": ..., "payload": {...}}``: `Envelope` is the model of
every action's body (each action's module, schemas.actions, subclasses it with its
``action: Literal[...]`` and its payload model), and `ActionRequest` what such a body means
once validated, when it is not purchases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from schemas.inbound.model import Hit, InboundModel

if TYPE_CHECKING:
    from schemas.actions.base import Directory, Origin
    from schemas.inbound.parsed import ParsedWebhook
    from schemas.messages import Command


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


class ActionRequest(BaseModel):
    """What an action's body means (other than purchases): the action's module subclasses it
    with the canonical fields and says how it becomes a command (`command`, in the worker's
    normaliser, streams.normalizer). The ingress reads the rest, to route and answer it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def names(self) -> tuple[str | None, str | None]:
        """The customer it names: (email, phone), either may be None."""
        return None, None

    def claimed_order(self) -> str | None:
        """The order it claims for its customer (one spend per order), if any."""
        return None

    def owner_order(self) -> str | None:
        """The order whose owner it concerns, when it names no customer (a refund): it is
        routed behind that customer's requests."""
        return None

    async def command(self, directory: Directory, origin: Origin) -> Command:
        """The one command this request makes (schemas.errors.Refused: it cannot be done)."""
        raise NotImplementedError
