"""Redrive: feed dead letters back to where they came from, byte for byte.

Each dead letter's original key and value go to its original topic and partition (acks=all, the
idempotent producer of `kopilka.core.kafka.make_producer`); only once the broker has them is the
letter marked redriven. A letter already redriven is skipped unless forced, and a redrive that
happens twice anyway (forced, or a crash between producing and marking) is harmless: every
stage derives its ids from the record, so the second copy changes nothing. Shared by
`kopilka dead-letters redrive` and `POST /api/admin/dead-letters/{id}/redrive`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from kopilka.core import topics
from kopilka.core.logging import get_logger
from kopilka.directory.dead_letters import DeadLetterStore, Filters, StoredDeadLetter

log = get_logger(__name__)

KNOWN_TOPICS = frozenset(spec.name for spec in topics.ALL)
_CHUNK = 500  # letters in flight at once


@dataclass
class Report:
    dry_run: bool = False
    redriven: list[str] = field(default_factory=list)  # or, dry run: would be redriven
    skipped: list[dict] = field(default_factory=list)  # {"id", "reason"}
    not_found: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # {"id", "error"}: the broker refused

    def view(self) -> dict:
        key = "would_redrive" if self.dry_run else "redriven"
        return {
            "dry_run": self.dry_run,
            key: self.redriven,
            "skipped": self.skipped,
            "not_found": self.not_found,
            "failed": self.failed,
        }


def triage(letters: Iterable[StoredDeadLetter], *, force: bool) -> tuple[list, list[dict]]:
    """(the letters to redrive, the skipped ones with why)."""
    go, skipped = [], []
    for dl in letters:
        if dl.source_topic not in KNOWN_TOPICS:
            skipped.append({"id": dl.id, "reason": f"unknown source topic {dl.source_topic!r}"})
        elif dl.redriven_at is not None and not force:
            skipped.append({"id": dl.id, "reason": "already_redriven (use force to send again)"})
        else:
            go.append(dl)
    return go, skipped


async def redrive_ids(
    store: DeadLetterStore,
    producer: AIOKafkaProducer,
    ids: Iterable[str],
    *,
    force: bool = False,
    dry_run: bool = False,
) -> Report:
    report = Report(dry_run=dry_run)
    letters = []
    for dl_id in dict.fromkeys(ids):  # each once, in the order given
        dl = await store.get(dl_id)
        if dl is None:
            report.not_found.append(dl_id)
        else:
            letters.append(dl)
    await _redrive(store, producer, letters, report, force=force)
    return report


async def redrive_matching(
    store: DeadLetterStore,
    producer: AIOKafkaProducer,
    filters: Filters,
    *,
    force: bool = False,
    dry_run: bool = False,
) -> Report:
    """Every letter matching `filters` (never redriven ones, unless forced), oldest first."""
    report = Report(dry_run=dry_run)
    if not force:
        filters = replace(filters, redriven=False)
    await _redrive(store, producer, await store.all_matching(filters), report, force=force)
    return report


async def _redrive(store, producer, letters, report: Report, *, force: bool) -> None:
    go, report.skipped = triage(letters, force=force)
    if report.dry_run:
        report.redriven = [dl.id for dl in go]
        return
    for start in range(0, len(go), _CHUNK):
        chunk = go[start : start + _CHUNK]
        results = await asyncio.gather(
            *(_produce(producer, dl) for dl in chunk), return_exceptions=True
        )
        done = []
        for dl, result in zip(chunk, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, KafkaError | TimeoutError):
                    raise result
                report.failed.append({"id": dl.id, "error": type(result).__name__})
            else:
                done.append(dl.id)
        if done:
            await store.mark_redriven(done)
            report.redriven.extend(done)
    log.info(
        "dead_letters_redriven",
        redriven=len(report.redriven),
        skipped=len(report.skipped),
        failed=len(report.failed),
    )


async def _produce(producer: AIOKafkaProducer, dl: StoredDeadLetter) -> None:
    partitions = await producer.partitions_for(dl.source_topic)
    # the original partition keeps the record with its key's others; should the topic have
    # been shrunk or rebuilt, the key decides as it did at first
    partition = dl.partition if dl.partition in partitions else None
    await producer.send_and_wait(dl.source_topic, dl.value, key=dl.key, partition=partition)
