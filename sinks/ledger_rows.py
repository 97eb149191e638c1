"""What one loyalty event writes to the Postgres read model, as plain rows (pure, no I/O). What
an event means for them (sign, words, lot moves) its type says (schemas.event_model).

Shared by the worker's ledger sink (sinks/postgres.py, upserts into the live tables) and by
`kopilka replay events --into postgres` (kopilka/cli/events_rebuild.py, COPY into a fresh
schema), so the two can never disagree on what an event means for `ledger_entries`, `lots` and
`balances`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Union

from pydantic import Field, TypeAdapter, ValidationError

from schemas.events import EVENT_TYPES, Event, parse_event

# Column order of each row kind (what the sink's `unnest` and the rebuild's COPY take).
ENTRY_COLUMNS = (
    "event_id",
    "tenant_id",
    "customer_id",
    "type",
    "order_id",
    "amount",
    "points",
    "balance_after",
    "expires_at",
    "occurred_at",
    "event",
    "delta",
    "reason",
)
AWARD_COLUMNS = (
    "lot_id",
    "tenant_id",
    "customer_id",
    "order_id",
    "points",
    "available_at",
    "expires_at",
)
BALANCE_COLUMNS = ("tenant_id", "customer_id", "balance", "lifetime_spend", "level", "seq")

# every event model in one validator, chosen by `type` while parsing: one pass over the JSON
# (parse_event decodes it once to find the type, then validates it again; 30 % more CPU)
_ANY_EVENT = TypeAdapter(
    Annotated[Union[tuple(EVENT_TYPES.values())], Field(discriminator="type")]  # noqa: UP007
)


def read_event(raw: bytes) -> Event:
    """`parse_event(raw)`, in one pass for an event it accepts (for bulk readers: the events
    rebuild); a record it refuses is handed to parse_event, whose verdict (and error) stands,
    as in the worker's sink."""
    try:
        return _ANY_EVENT.validate_json(raw)
    except ValidationError:
        return parse_event(raw)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~3x (object.__setattr__)
class LedgerRows:
    """One event's rows: its ledger entry, the lot it creates or tops up (awards with points),
    the lot moves it makes and the customer's balance as of it. Ids are UUID strings (asyncpg
    encodes them as uuid; building UUID objects was a fifth of the sink's CPU per event) and
    the entry's `event` column is the record's JSON text, cast to jsonb by the writer."""

    event_id: str
    entry: tuple
    award: tuple | None
    moves: list[tuple[str, int]]
    balance: tuple
    seq: int


def rows_of(e: Event, raw: bytes) -> LedgerRows:
    """The rows of one event; `raw` is its record value (kept whole in ledger_entries.event)."""
    fields = e.__dict__  # what the model holds; getattr(e, absent, None) is slow on a model
    points = fields.get("points", 0)
    customer = e.customer.id
    entry = (
        e.event_id,
        e.tenant_id,
        customer,
        e.type,
        fields.get("order_id"),
        Decimal(fields.get("amount") or fields.get("refund_amount") or "0"),
        points,
        e.balance_after,
        fields.get("expires_at"),
        e.occurred_at,
        raw.decode(),
        e.delta_sign * points,
        e.describe(),
    )
    award = None
    if e.creates_lot and points > 0:
        award = (
            e.lot_id or e.event_id,
            e.tenant_id,
            customer,
            fields.get("order_id"),  # an award named by no order (none today) has none
            points,
            e.available_at,
            e.expires_at,
        )
    balance = (e.tenant_id, customer, e.balance_after, Decimal(e.lifetime_spend), e.level, e.seq)
    return LedgerRows(e.event_id, entry, award, e.lot_moves(), balance, e.seq)


def merged_awards(rows: Iterable[LedgerRows]) -> list[list]:
    """One lot row per lot id: awards with the same times share a lot (schemas.rules.builder); the
    first award names it, the others add their points (a statement may not touch a row twice)."""
    lots: dict[str, list] = {}
    for r in rows:
        if r.award is None:
            continue
        lot = lots.get(r.award[0])
        if lot is None:
            lots[r.award[0]] = list(r.award)
        else:
            lot[4] += r.award[4]
    return list(lots.values())


def merged_moves(rows: Iterable[LedgerRows]) -> dict[str, int]:
    """The net move of each lot over these events."""
    moves: dict[str, int] = {}
    for r in rows:
        for lot_id, delta in r.moves:
            moves[lot_id] = moves.get(lot_id, 0) + delta
    return moves


def newest_balances(rows: Iterable[LedgerRows]) -> list[tuple]:
    """Each customer's balance row as of their newest event (highest seq; first one on a tie)."""
    newest: dict[tuple, LedgerRows] = {}
    for r in rows:
        key = r.balance[:2]
        held = newest.get(key)
        if held is None or held.seq < r.seq:
            newest[key] = r
    return [r.balance for r in newest.values()]
