"""Agent `ledger`: commands -> the customer's ledger (Faust tables) -> loyalty.events.

All commands of one customer arrive on one partition (key tenant:customer), in order, so its
table entries are only ever touched by one actor. The rules themselves are pure: schemas.rules.
After each command: the new state is written, follow-up commands (a referral award, on the
referrer's key) and the events are sent, and, when the request's sender waits for it, an
outcome.

Nothing is acknowledged that was neither applied nor dead-lettered: a command this worker
cannot read or apply goes whole to `kopilka.dead-letters` (with a rejected outcome for whoever
waits); a command of a newer version than this worker knows (a rolling deploy) is not skipped:
the worker stops without committing, so an upgraded worker takes the partition over.

`register(stream_app)` puts the agent and its progress timer on an app (streams.app) and binds
the table and topics the functions here use; nothing is bound at import.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TypeVar

import orjson
from faust.exceptions import PartitionsMismatch
from faust.types import EventT
from pydantic import ValidationError

from kopilka.core.logging import get_logger
from kopilka.core.retry import RETRIES
from schemas.commands import (
    ExpireCommand,
    PurchaseCommand,
    RefundCommand,
    SettleCommand,
    SpendCommand,
    batch_items,
    command_of,
    parse_command,
)
from schemas.messages import COMMAND_VERSION, Command, Outcome, customer_key
from schemas.rules.builder import Result
from schemas.rules.dispatch import apply, order_key
from schemas.rules.state import CustomerState, OrderState
from streams.acks import held
from streams.app import StreamApp
from streams.dead_letters import of_event
from streams.dead_letters import send as send_dead_letter
from streams.settlement import settle_entries
from streams.table_reads import reader

log = get_logger(__name__)
T = TypeVar("T")

# Bound by `register`: the app (its topics) and its ledger table, which `step` reads and
# writes (a test or a perf script may bind a plain dict instead).
_sa: StreamApp
state_table: MutableMapping[str, bytes]


def register(stream_app: StreamApp) -> None:
    """The `ledger` agent on `commands`, and its progress log every 5 s."""
    global _sa, state_table
    _sa, state_table = stream_app, stream_app.state_table
    stream_app.app.agent(stream_app.topics.commands)(ledger)
    stream_app.app.timer(interval=5.0)(_log_progress)


# Commands this process applied, by type: logged every few seconds while they change (operators
# and the scale-out test see how the work spreads over worker processes).
applied: Counter[str] = Counter()
_logged: dict[str, int] = {}


_reading: tuple[object, Callable[[str], bytes | None]] = (None, dict().get)


def _read(key: str) -> bytes | None:
    """`state_table.get(key)`, in one store look-up (streams.table_reads)."""
    global _reading
    if _reading[0] is not state_table:  # bound anew (a test or a perf script binds a dict)
        _reading = (state_table, reader(state_table))
    return _reading[1](key)


def step(customer_key: str, cmd: Command) -> Result:
    """Load the states the command needs, apply it, store what changed: the customer entry
    first, then the order entry (see streams.app: a lost order write is repaired on replay).

    A replay writes its entries again, unchanged: after a kill -9 the local RocksDB store can
    hold writes whose changelog records never left the process, and rewriting is what puts
    them in the changelog, where the partition's next owner reads its state from.

    A refund can reach the ledger before the purchase (or spend) of its order: the order was
    claimed, and the refund normalised, while the claimant's command was still on its way (a
    worker killed between claiming an order and sending its command). Such a refund is parked
    on its order ("p|tenant:customer|order", the refund commands as JSON) and applied right
    after the command that makes the order known: the result is the one the shop's order of
    requests gives."""
    ckey = f"c|{customer_key}"
    state = CustomerState.from_bytes(_read(ckey))
    okey = order_key(cmd)
    if okey is None:
        return _stored(customer_key, None, state, None, apply(state, {}, cmd))
    order = OrderState.from_bytes(_read(f"o|{customer_key}|{okey}"))
    if type(cmd) is RefundCommand and not _known(state, okey, order):
        return _park(customer_key, okey, state, cmd)
    result = _stored(customer_key, okey, state, order, apply(state, {okey: order}, cmd))
    if type(cmd) in (PurchaseCommand, SpendCommand):
        result = _unpark(customer_key, okey, result)
    return result


def _stored(
    customer_key: str, okey: str | None, state: CustomerState, order: OrderState | None, result
) -> Result:
    """Write what `result` changed (or, for a replay, everything it touched) to the table."""
    if result.state is not state or result.replayed:
        ckey = f"c|{customer_key}"
        state_table[ckey] = result.state.to_bytes()
    # apply() copies what it changes: an order it returns unchanged is the very object
    if (
        okey is not None
        and result.order is not None
        and (result.replayed or result.order is not order)
    ):
        state_table[f"o|{customer_key}|{okey}"] = result.order.to_bytes()
    return result


def _known(state: CustomerState, okey: str, order: OrderState) -> bool:
    """Has the ledger seen the purchase or spend of this order? (The customer entry holds the
    newest version of the order it last touched, should the order entry's write be lost.)"""
    if state.last_order_key == okey and state.last_order is not None:
        order = state.last_order
    return order.settled or order.purchase_command is not None or order.spend_command is not None


def _park(customer_key: str, okey: str, state: CustomerState, cmd: RefundCommand) -> Result:
    pkey = f"p|{customer_key}|{okey}"
    parked = _parked(_read(pkey))
    if all(refund.command_id != cmd.command_id for refund in parked):
        state_table[pkey] = orjson.dumps([r.model_dump_json() for r in (*parked, cmd)])
        log.info(
            "refund_parked",
            tenant_id=cmd.tenant_id,
            request_id=cmd.request_id,
            command_id=cmd.command_id,
            reason="its order's purchase or spend has not reached the ledger yet",
        )
    return Result(state, None, [], "parked", reason=f"waiting for order {cmd.order_id}")


def _unpark(customer_key: str, okey: str, result: Result) -> Result:
    """Apply the refunds parked on this order, each stored as if it came on its own."""
    pkey = f"p|{customer_key}|{okey}"
    parked = _parked(_read(pkey))
    if not parked:
        return result
    state, order = result.state, result.order
    for refund in parked:
        done = _stored(customer_key, okey, state, order, apply(state, {okey: order}, refund))
        state, order = done.state, done.order or order
        result.events.extend(done.events)
        result.followups.extend(done.followups)
        log.info("parked_refund_applied", command_id=refund.command_id, status=done.status)
    del state_table[pkey]
    result.state, result.order = state, order
    return result


def _parked(data: bytes | None) -> list[RefundCommand]:
    if data is None:
        return []
    return [parse_command(text.encode()) for text in orjson.loads(data)]


async def writing_the_table(
    write: Callable[[], T], refresh: Callable[[], Awaitable[None]] | None = None
) -> T:
    """`write()`, a step that writes the ledger table, once this worker knows the table's
    changelog. Faust refuses a table write (PartitionsMismatch) while the consumer's metadata
    shows the changelog with fewer partitions than the commands topic: a changelog created
    while the worker joined its group, which a broker of a fresh cluster did not know yet.
    That is no fault of the command (it was dead-lettered as a bug before): the metadata is
    refreshed and the write tried again. Nothing is written before Faust's check, and a
    command applied again is recognised as a replay (schemas.rules.dispatch)."""
    delay, attempt = 0.1, 0
    while True:
        try:
            return write()
        except PartitionsMismatch as exc:
            attempt += 1
            RETRIES.labels("ledger_changelog_metadata").inc()
            log.warning(
                "retrying",
                step="ledger_changelog_metadata",
                attempt=attempt,
                detail=" ".join(str(exc).split())[:200],
                next_in_s=delay,
            )
            await (refresh or _sa.app.consumer.refresh_metadata)()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def newer_version(value: bytes) -> int | None:
    """The record's version when it is newer than this worker knows, else None."""
    try:
        return _newer(orjson.loads(value))
    except orjson.JSONDecodeError:
        return None


def _newer(fields: object) -> int | None:
    v = fields.get("v", 1) if isinstance(fields, dict) else None
    return v if isinstance(v, int) and v > COMMAND_VERSION else None


async def ledger(stream):
    async for event in stream.events():
        with held([event]):
            await _apply(event)


async def _apply(event: EventT) -> None:
    """Apply the record's command, or each command of a batch record in its order (each keyed
    by its own customer: the normaliser put only commands of this partition in it), and send
    what they made; what cannot be read or applied is dead-lettered, alone."""
    items = batch_items(event.value)
    if items is None:
        try:
            cmd = parse_command(event.value)
        except ValidationError as exc:
            if (version := newer_version(event.value)) is not None:
                await _wait_for_upgrade(version)
            await _dead(event, None, "unreadable_command", exc)
            return
        await _apply_command(event, event.key or b"", cmd, None)
        return
    for item, fields in enumerate(items):
        try:
            cmd = command_of(fields)
        except ValidationError as exc:
            if (version := _newer(fields)) is not None:
                await _wait_for_upgrade(version)
            await _dead(event, None, "unreadable_command", exc, item)
            continue
        await _apply_command(event, cmd.key, cmd, item)


async def _apply_command(event: EventT, key: bytes, cmd: Command, item: int | None) -> None:
    if isinstance(cmd, SettleCommand):
        await writing_the_table(lambda: settle_entries(state_table, key.decode(), cmd))
        return
    try:
        result = await writing_the_table(lambda: step(key.decode(), cmd))
    except Exception as exc:  # a bug: report it, never stop the partition
        log.exception("command_failed", tenant_id=cmd.tenant_id, command_id=cmd.command_id)
        await _dead(event, cmd, "internal_error", exc, item)
        return
    for followup in result.followups:
        await _sa.topics.commands.send(key=followup.key, value=followup.to_bytes())
    for e in result.events:
        await _sa.topics.events.send(key=key, value=e.encode())
    applied[cmd.type] += 1
    if log.is_enabled_for(logging.DEBUG):
        log.debug(
            "command_applied",
            stage="ledger",
            request_id=cmd.request_id,
            tenant_id=cmd.tenant_id,
            command_id=cmd.command_id,
            type=cmd.type,
            status=result.status,
            replayed=result.replayed,
            events=len(result.events),
        )
    if result.status == "duplicate":
        log.info("duplicate_command", tenant_id=cmd.tenant_id, reason=result.reason)
    if cmd.wait and not isinstance(cmd, ExpireCommand) and result.status != "parked":
        await _outcome(
            cmd,
            result.status,
            reason=result.reason,
            events=[orjson.loads(e) for e in result.events],
        )


async def _log_progress() -> None:
    if applied != _logged:
        log.info("ledger_progress", applied=dict(applied), total=applied.total())
        _logged.clear()
        _logged.update(applied)


async def _outcome(cmd: Command, status: str, **fields) -> None:
    await _sa.topics.outcomes.send(
        key=cmd.request_id.encode(),
        value=Outcome(
            request_id=cmd.request_id,
            command_id=cmd.command_id,
            item=cmd.item,
            status=status,
            **fields,
        ).to_bytes(),
    )


async def _dead(
    event: EventT, cmd: Command | None, code: str, exc: Exception, item: int | None = None
) -> None:
    """Dead-letter the record, or only its `item`th command (a batch record's)."""
    reason = f"the ledger could not apply this command: {type(exc).__name__}"
    ids = {"tenant_id": cmd.tenant_id, "request_id": cmd.request_id} if cmd else {}
    part = None
    if item is not None:  # a batch mixes customers, and tenants: the command's own key, if any
        fields = (batch_items(event.value) or [])[item]  # read again: parsing changed it
        part = (item, cmd.key if cmd else _key_of(fields), orjson.dumps(fields))
    await send_dead_letter(of_event(event, "ledger", code, reason, part, error=exc, **ids))
    if cmd is not None and cmd.wait:
        await _outcome(cmd, "rejected", reason=f"{code}: {type(exc).__name__}")


def _key_of(fields: object) -> bytes | None:
    """The key an unreadable command of a batch would have had, if its fields still say."""
    customer = fields.get("customer") if isinstance(fields, dict) else None
    tenant_id = fields.get("tenant_id") if isinstance(fields, dict) else None
    customer_id = customer.get("id") if isinstance(customer, dict) else None
    if isinstance(tenant_id, str) and isinstance(customer_id, str):
        return customer_key(tenant_id, customer_id)
    return None


async def _wait_for_upgrade(version: int) -> None:
    """Never skip a newer command: stop this (old) worker at once, without committing, so the
    partition goes to an upgraded one. Exiting is the only way out that neither acknowledges
    the record nor holds up the group's rebalance while it waits."""
    log.critical(
        "command_version_unsupported",
        version=version,
        supported=COMMAND_VERSION,
        action="stopping this worker without committing: upgrade it",
    )
    await asyncio.sleep(0.5)  # let the log line out
    os._exit(75)  # EX_TEMPFAIL: a supervisor restarts it; an upgraded worker takes over
