"""Imports point one way between our packages: the import-linter contracts in pyproject.toml
(ingest -> schemas, core; streams -> schemas, sinks, core; sinks -> schemas, core; schemas ->
core; the core imports none of them but for the CLI). A broken contract fails this test with
import-linter's report: which module imports which, and on what line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_contract_is_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout, out.stdout
