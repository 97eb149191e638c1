"""Kopilka's standard JSON: ``{"action": ..., "payload": {...}}``. Each action's envelope and
payload models are in its module (schemas.actions); this reads the action's name, finds its
model in the actions' table and lets it validate the body.

The models validate the body and are the OpenAPI document's request schemas. The action is
read stripped and in any case; the payload's field names in any case.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from schemas import actions
from schemas.errors import InboundError
from schemas.inbound.envelope import action_name
from schemas.inbound.model import refusal
from schemas.inbound.parsed import ParsedWebhook
from schemas.text_checks import check_tree


def parse_standard(obj: dict[str, Any], region: str, plain: bool = False) -> ParsedWebhook:
    """A standard body (`obj` has "action"). `plain`: the JSON text holds no character the
    field checks refuse (`text_checks.plain_json`), so the walk over every field is skipped."""
    action = obj["action"]
    model = actions.WEBHOOKS.get(action_name(action) or "")
    if model is None:
        shown = repr(action[:40]) if isinstance(action, str) else "of this type"
        raise InboundError(
            422,
            "unknown_action",
            f"unknown action {shown}; supported: {', '.join(actions.WEBHOOKS)}",
            "action",
        )
    payload = None if plain else model.hits(obj).get("payload")
    if payload is not None and isinstance(payload[1], dict):
        items = model.unchecked(obj)  # checked one by one (a bad batch item is refused alone)
        check_tree(obj, skip=frozenset({items[0]}) if items else frozenset())
    try:
        webhook = model.model_validate(obj, context={"region": region})
    except ValidationError as exc:
        raise refusal(exc, model, obj) from None
    return webhook.parsed(obj, plain)
