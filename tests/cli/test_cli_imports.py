"""Importing the CLI must not import prometheus_client: `kopilka ingest --procs N` sets
PROMETHEUS_MULTIPROC_DIR before its first import (ingest/serve.py), else /metrics of the
processes sharing a port would not add up (tests/e2e/test_ingress_procs.py)."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_imports_without_prometheus_client():
    probe = "import sys, kopilka.cli.main; print('prometheus_client' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False", out.stdout + out.stderr
