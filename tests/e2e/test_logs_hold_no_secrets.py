"""After the whole session: no credential it issued appears in any log the run wrote.

Runs last (marker `logs_audit`), so it reads every line the ingress, the worker, Kafka, Postgres
and Redis wrote while every other test ran: each webhook secret, API key and signing secret the
session created or rotated is looked for verbatim, and so is anything shaped like one.
"""

from __future__ import annotations

import json
import re

import pytest
from issued import SECRETS

_SHAPED_LIKE_A_SECRET = re.compile(rb"(whk_|kpk_)[A-Za-z0-9_-]{32}|whsec_[A-Za-z0-9+/=]{40}")


@pytest.mark.logs_audit
def test_no_issued_secret_appears_in_any_log(stack):
    logs = sorted(p for p in stack.data_dir.rglob("*.log") if p.is_file())
    logs += sorted((stack.data_dir / "schemathesis").glob("*"))  # its report and output
    assert any(p.name == "ingest.log" for p in logs), logs
    assert len(SECRETS) >= 10, "the session should have issued credentials to look for"
    found = []
    for path in logs:
        text = path.read_bytes()
        found += [(path.name, s[:8] + "…") for s in SECRETS if s.encode() in text]
        found += [(path.name, m.group()[:8] + b"...") for m in _SHAPED_LIKE_A_SECRET.finditer(text)]
    assert not found, found


@pytest.mark.logs_audit
def test_every_kopilka_process_logs_json_lines_faust_and_aiokafka_included(stack):
    """One configuration (kopilka.core.logging) for every line a Kopilka process writes: ours, and
    the standard library's loggers (Faust's banner and rebalances, aiokafka, aiohttp)."""
    logs = [stack.data_dir / "logs" / name for name in ("ingest.log", "worker.log", "dispatch.log")]
    loggers: set[str] = set()
    for path in logs:
        for n, line in enumerate(path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise AssertionError(f"{path.name}:{n} is not JSON: {line[:200]!r}") from None
            assert {"event", "level", "timestamp"} <= record.keys(), (path.name, n, record)
            loggers.add(str(record.get("logger", "")).split(".")[0])
    assert {"faust", "aiokafka"} <= loggers, loggers
