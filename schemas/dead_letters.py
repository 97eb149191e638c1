"""Dead letters: records a stage could not apply because of the data itself, kept whole.

A dead letter carries the original record (topic, partition, offset, key and value, byte for
byte), the stage that gave up, a machine code and a human reason, the error, and how many times
the stage tried. Its id derives from where the record came from, so dead-lettering the same
record twice (a retry after a crash) yields one dead letter, and a redrive (`kopilka
dead-letters redrive`) feeds the very same bytes back to the very same topic, where every stage
is idempotent on ids derived from them.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from kopilka.core.ids import derived_id
from schemas.messages import Record

Stage = Literal["normalize", "ledger", "sink.postgres", "outbound"]


class DeadLetter(Record):
    """`kopilka.dead-letters`, keyed by tenant id (empty when unknown)."""

    v: Literal[1] = 1
    dead_letter_id: str
    stage: Stage
    source_topic: str
    partition: int
    offset: int
    key_b64: str | None = Field(None, description="the original record's key, base64")
    value_b64: str = Field(description="the original record's value, base64")
    tenant_id: str | None = None
    request_id: str | None = Field(None, description="the webhook's event_id, when known")
    code: str
    reason: str
    error: str | None = None
    attempts: int = 1
    dead_at: datetime

    @classmethod
    def of(
        cls,
        *,
        stage: Stage,
        source_topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        code: str,
        reason: str,
        error: BaseException | str | None = None,
        attempts: int = 1,
        tenant_id: str | None = None,
        request_id: str | None = None,
        item: int | None = None,
    ) -> DeadLetter:
        """`item`: which part of the record this is about (a batch item), when not all of it."""
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        return cls(
            dead_letter_id=derived_id("dead-letter", stage, source_topic, partition, offset, item),
            stage=stage,
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key_b64=base64.b64encode(key).decode("ascii") if key is not None else None,
            value_b64=base64.b64encode(value).decode("ascii"),
            tenant_id=tenant_id,
            request_id=request_id,
            code=code,
            reason=reason[:1000],
            error=error[:1000] if error else None,
            attempts=attempts,
            dead_at=datetime.now(UTC),
        )

    @property
    def key(self) -> bytes | None:
        return base64.b64decode(self.key_b64) if self.key_b64 is not None else None

    @property
    def value(self) -> bytes:
        return base64.b64decode(self.value_b64)
