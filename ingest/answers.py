"""The body of the webhook's answer: what was accepted, what was refused, and outcomes."""

from __future__ import annotations

from kopilka.core.ids import derived_id
from schemas.inbound import ParsedWebhook


def command_items(parsed: ParsedWebhook) -> list[int]:
    """The item index of every command the request will make (purchases by their index)."""
    if parsed.purchases:
        return [p.index for p in parsed.purchases]
    return [0]


def expected_commands(event_id: str, parsed: ParsedWebhook) -> set[str]:
    return {derived_id(event_id, i) for i in command_items(parsed)}


def accepted(event_id: str, parsed: ParsedWebhook) -> dict:
    body: dict = {"status": "accepted", "event_id": event_id, "action": parsed.action}
    if parsed.action == "batch_purchase":
        body["accepted"] = [{"index": p.index, "order_id": p.order_id} for p in parsed.purchases]
        body["rejected"] = [r.model_dump() for r in parsed.rejected]
    elif parsed.purchases:
        body["orders"] = [p.order_id for p in parsed.purchases]
    elif (order := parsed.claimed_order() or parsed.owner_order()) is not None:
        body["orders"] = [order]
    return body


def with_outcomes(body: dict, event_id: str, parsed: ParsedWebhook, outcomes: dict) -> dict:
    """The accepted body plus each command's outcome (status, reason, the events it made)."""
    items = []
    for item in command_items(parsed):
        outcome = outcomes.get(derived_id(event_id, item))
        if outcome is not None:
            items.append(
                {
                    "index": item,
                    "status": outcome["status"],
                    "reason": outcome.get("reason"),
                    "events": outcome.get("events", []),
                }
            )
    return {**body, "status": "processed", "outcomes": items}
