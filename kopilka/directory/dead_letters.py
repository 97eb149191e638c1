"""The Postgres home of dead letters: store, list, show, and remember redrives.

`DeadLetterStore` is a plain class over an asyncpg pool; it knows nothing of Kafka or Faust.
`sinks.dead_letters.DeadLetterSink` puts its writing behind the sink protocol (`sinks.base.Sink`):
the agent in `streams.dead_letters` feeds it from `kopilka.dead-letters`; the CLI (`kopilka
dead-letters`) and the admin API read the store and mark what they redrove. Writes are idempotent
on the dead letter's id (derived from the source record), so a replayed batch stores nothing twice.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from schemas.dead_letters import DeadLetter

MAX_LIMIT = 1000


def clean_text(value: str | None) -> str | None:
    """Text Postgres accepts: no NUL, no lone surrogates (a poison record's reason may carry
    both; the original bytes are kept intact in `value`)."""
    if value is None:
        return None
    value = value.replace("\x00", "\\x00")
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def tenant_text(tenant_id: str | None) -> str | None:
    """A tenant id as stored: a uuid in its canonical form, anything else as (clean) text."""
    if not tenant_id:
        return None
    try:
        return str(uuid.UUID(tenant_id))
    except ValueError:
        return clean_text(tenant_id)


def row_of(dl: DeadLetter) -> tuple:
    """The columns of one dead letter, in the order of `_INSERT`."""
    return (
        uuid.UUID(dl.dead_letter_id),
        clean_text(dl.stage),
        clean_text(dl.source_topic),
        dl.partition,
        dl.offset,
        dl.key,
        dl.value,
        tenant_text(dl.tenant_id),
        clean_text(dl.request_id),
        clean_text(dl.code),
        clean_text(dl.reason),
        clean_text(dl.error),
        dl.attempts,
        dl.dead_at,
    )


@dataclass(frozen=True)
class Filters:
    tenant_id: str | None = None
    stage: str | None = None
    code: str | None = None
    since: datetime | None = None
    redriven: bool | None = None  # False: never redriven; None: either
    before: tuple[datetime, uuid.UUID] | None = None  # paging cursor (exclusive)

    def where(self) -> tuple[str, list]:
        """The WHERE clause (or "") and its arguments, $1 onwards."""
        clauses: list[str] = []
        args: list = []

        def arg(value) -> str:
            args.append(value)
            return f"${len(args)}"

        if self.tenant_id is not None:
            clauses.append(f"tenant_id = {arg(tenant_text(self.tenant_id))}")
        if self.stage is not None:
            clauses.append(f"stage = {arg(self.stage)}")
        if self.code is not None:
            clauses.append(f"code = {arg(self.code)}")
        if self.since is not None:
            clauses.append(f"dead_at >= {arg(self.since)}")
        if self.redriven is True:
            clauses.append("redriven_at IS NOT NULL")
        elif self.redriven is False:
            clauses.append("redriven_at IS NULL")
        if self.before is not None:
            at, last_id = self.before
            clauses.append(f"(dead_at, id) < ({arg(at)}, {arg(last_id)})")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def encode_cursor(dead_at: datetime, dl_id: uuid.UUID | str) -> str:
    """URL-safe: microseconds since the epoch (exact, as Postgres keeps them) and the id."""
    return f"{(dead_at - _EPOCH) // _MICRO}~{dl_id}"


def decode_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    """Raises ValueError for anything `encode_cursor` did not make."""
    micros, sep, dl_id = text.partition("~")
    if not sep or not (micros.isascii() and micros.isdigit()) or len(micros) > 18:
        raise ValueError("not a paging cursor")
    return _EPOCH + int(micros) * _MICRO, uuid.UUID(dl_id)


@dataclass(frozen=True)
class StoredDeadLetter:
    id: str
    stage: str
    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    tenant_id: str | None
    request_id: str | None
    code: str
    reason: str
    error: str | None
    attempts: int
    dead_at: datetime
    redriven_at: datetime | None
    redrive_count: int

    @classmethod
    def from_row(cls, row) -> StoredDeadLetter:
        fields = dict(row)
        fields["id"] = str(fields["id"])
        fields["key"] = bytes(fields["key"]) if fields["key"] is not None else None
        fields["value"] = bytes(fields["value"])
        return cls(**fields)

    def view(self, *, full: bool = False) -> dict:
        """JSON-ready. `full` adds the original key and value (base64, and as text when the value
        is UTF-8) for `show`; a listing gives only the value's size."""
        out = {
            "id": self.id,
            "stage": self.stage,
            "tenant_id": self.tenant_id,
            "request_id": self.request_id,
            "code": self.code,
            "reason": self.reason,
            "error": self.error,
            "attempts": self.attempts,
            "source": {
                "topic": self.source_topic,
                "partition": self.partition,
                "offset": self.offset,
            },
            "value_bytes": len(self.value),
            "dead_at": self.dead_at.isoformat(),
            "redriven_at": self.redriven_at.isoformat() if self.redriven_at else None,
            "redrive_count": self.redrive_count,
        }
        if full:
            out["key_b64"] = base64.b64encode(self.key).decode() if self.key is not None else None
            out["value_b64"] = base64.b64encode(self.value).decode()
            try:
                out["value_text"] = self.value.decode("utf-8")
            except UnicodeDecodeError:
                out["value_text"] = None
        return out


_COLUMNS = (
    'id, stage, source_topic, partition, "offset", key, value, tenant_id, request_id, code,'
    " reason, error, attempts, dead_at, redriven_at, redrive_count"
)


class DeadLetterStore:
    _INSERT = """
    INSERT INTO dead_letters (id, stage, source_topic, partition, "offset", key, value, tenant_id,
                              request_id, code, reason, error, attempts, dead_at)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bigint[],
                         $6::bytea[], $7::bytea[], $8::text[], $9::text[], $10::text[],
                         $11::text[], $12::text[], $13::int[], $14::timestamptz[])
    ON CONFLICT (id) DO NOTHING
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add_many(self, letters: Iterable[DeadLetter]) -> int:
        """Store the dead letters (one statement); those already stored are left as they are."""
        rows = {}
        for dl in letters:
            rows.setdefault(dl.dead_letter_id, row_of(dl))
        if not rows:
            return 0
        columns = [list(col) for col in zip(*rows.values(), strict=True)]
        status = await self.pool.execute(self._INSERT, *columns)
        return int(status.rsplit(" ", 1)[-1])

    async def list(
        self, filters: Filters = Filters(), limit: int = 100
    ) -> tuple[list[StoredDeadLetter], str | None]:
        """Newest first; the cursor of the next page (None on the last one)."""
        limit = max(1, min(limit, MAX_LIMIT))
        where, args = filters.where()
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM dead_letters{where}"  # noqa: S608 - built from constants
            f" ORDER BY dead_at DESC, id DESC LIMIT {limit + 1}",
            *args,
        )
        found = [StoredDeadLetter.from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return found, encode_cursor(found[-1].dead_at, found[-1].id) if more else None

    async def all_matching(self, filters: Filters) -> list[StoredDeadLetter]:
        """Every match, oldest first (what a bulk redrive feeds back, in order)."""
        where, args = filters.where()
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM dead_letters{where}"  # noqa: S608 - built from constants
            " ORDER BY dead_at, id",
            *args,
        )
        return [StoredDeadLetter.from_row(r) for r in rows]

    async def get(self, dl_id: str) -> StoredDeadLetter | None:
        try:
            key = uuid.UUID(dl_id)
        except ValueError:
            return None
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM dead_letters WHERE id = $1",  # noqa: S608
            key,
        )
        return StoredDeadLetter.from_row(row) if row else None

    async def mark_redriven(self, dl_ids: Iterable[str]) -> int:
        ids = [uuid.UUID(i) for i in dl_ids]
        status = await self.pool.execute(
            "UPDATE dead_letters SET redriven_at = now(), redrive_count = redrive_count + 1"
            " WHERE id = ANY($1::uuid[])",
            ids,
        )
        return int(status.rsplit(" ", 1)[-1])
