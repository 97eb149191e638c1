"""The public event contract of `loyalty.events`.

Every event is a JSON object with `type` and `version`; money is a decimal *string* (exact),
points are integers, times are RFC 3339 in UTC. Each type has a JSON Schema file under
`schemas/json/`, generated from these models by `kopilka schemas write` and checked by a test.
Record key: `tenant_id:customer_id` (UTF-8). Consumers must de-duplicate on `event_id`:
delivery is at-least-once, and a re-processed input re-emits the same event with the same id.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import CustomerRef

SCHEMA_DIR = Path(__file__).resolve().parent / "json"


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(description="Unique id; the same input always yields the same id")
    type: str
    version: int
    tenant_id: str
    customer: CustomerRef
    occurred_at: datetime = Field(description="When the shop's request was received (UTC)")
    seq: int = Field(description="Per-customer sequence number of the ledger, from 1")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @property
    def key(self) -> bytes:
        return f"{self.tenant_id}:{self.customer.id}".encode()


class BonusAwarded(Event):
    """Points awarded for a purchase, as one lot that expires at `expires_at`."""

    type: Literal["bonus_awarded"] = "bonus_awarded"
    version: Literal[1] = 1
    order_id: str
    amount: str = Field(description="Purchase amount, decimal string", pattern=r"^\d+(\.\d+)?$")
    points: int = Field(ge=0)
    balance_after: int = Field(ge=0)
    lifetime_spend: str = Field(pattern=r"^\d+(\.\d+)?$")
    expires_at: datetime


EVENT_TYPES: dict[str, type[Event]] = {"bonus_awarded": BonusAwarded}


def parse_event(data: bytes) -> Event:
    kind = orjson.loads(data).get("type")
    model = EVENT_TYPES.get(kind)
    if model is None:
        raise ValueError(f"unknown event type {kind!r}")
    return model.model_validate_json(data)


def json_schema(model: type[Event]) -> dict:
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
