"""The public event contract of `loyalty.events`.

Every event is a JSON object with `type` and `version`; money is a decimal *string* (exact),
points are integers, times are RFC 3339 in UTC. Each type has a JSON Schema file under
`schemas/json/`, generated from these models by `kopilka schemas write` and checked by a test.
Each action's events are in its module (schemas.actions); what every event carries, and the
two any action may emit, in schemas.event_model. This module lists them all.
Record key: `tenant_id:customer_id` (UTF-8). Consumers must de-duplicate on `event_id`:
delivery is at-least-once, and a re-processed input re-emits the same event with the same id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from schemas.actions import EVENTS
from schemas.actions.purchase import BonusAwarded
from schemas.actions.referral import ReferralAwarded
from schemas.actions.refund import BonusReturned, BonusReversed
from schemas.actions.register import CustomerRegistered
from schemas.actions.spend import BonusSpent, SpendRejected
from schemas.event_model import BonusExpired, Event, LevelChanged, LotPoints

SCHEMA_DIR = Path(__file__).resolve().parent / "json"

# The contract's types in the order it first listed them (the event stream's errors, the
# dashboard and `kopilka schemas write` show them so); a new action's types follow.
_FIRST = (
    "bonus_awarded",
    "referral_awarded",
    "level_changed",
    "customer_registered",
    "bonus_spent",
    "spend_rejected",
    "bonus_expired",
    "bonus_reversed",
    "bonus_returned",
)


def _kind(model: type[Event]) -> str:
    return str(model.model_fields["type"].default)


def _place(model: type[Event]) -> int:
    return _FIRST.index(_kind(model)) if _kind(model) in _FIRST else len(_FIRST)


_ALL: tuple[type[Event], ...] = (*EVENTS, LevelChanged, BonusExpired)
EVENT_TYPES: dict[str, type[Event]] = {_kind(m): m for m in sorted(_ALL, key=_place)}


def parse_event(data: bytes) -> Event:
    """The event in `data` (ValueError when it is none): its JSON is parsed once, then checked
    against its type's model."""
    fields = orjson.loads(data)
    kind = fields.get("type")
    model = EVENT_TYPES.get(kind)
    if model is None:
        raise ValueError(f"unknown event type {kind!r}")
    return model.model_validate(fields)


def json_schema(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = (
        f"https://kopilka.dev/schemas/{model.model_fields['type'].default}.v{model.model_fields['version'].default}.json"
    )
    return schema


def schema_path(model: type[Event]) -> Path:
    return (
        SCHEMA_DIR
        / f"{model.model_fields['type'].default}.v{model.model_fields['version'].default}.json"
    )


def write_schemas() -> list[Path]:
    written = []
    for model in EVENT_TYPES.values():
        path = schema_path(model)
        path.write_bytes(
            orjson.dumps(json_schema(model), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            + b"\n"
        )
        written.append(path)
    return written


__all__ = [
    "EVENT_TYPES",
    "BonusAwarded",
    "BonusExpired",
    "BonusReturned",
    "BonusReversed",
    "BonusSpent",
    "CustomerRegistered",
    "Event",
    "LevelChanged",
    "LotPoints",
    "ReferralAwarded",
    "SpendRejected",
    "parse_event",
]
