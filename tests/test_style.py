"""The code passes ruff: lint rules and formatting, as `make lint` checks them (pyproject.toml's
[tool.ruff]). Here so that CI, which runs `make test`, runs them too; a finding fails this test
with ruff's report (file, line, rule)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess:
    ruff = Path(sys.executable).with_name("ruff")
    return subprocess.run(
        [str(ruff), *args, "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_finds_nothing():
    out = _ruff("check")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_code_is_formatted_as_ruff_formats_it():
    out = _ruff("format", "--check")
    assert out.returncode == 0, out.stdout + out.stderr
