"""After the whole session: no credential it issued appears in any log the run wrote.

Runs last (marker `logs_audit`), so it reads every line the ingress, the worker, Kafka, Postgres
and Redis wrote while every other test ran: each webhook secret, API key and signing secret the
session created or rotated is looked for verbatim, and so is anything shaped like one.
"""

from __future__ import annotations

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
