"""schemas/ and the pure rules core (streams/rules.py) type-check under mypy --strict: the
files and options are pyproject.toml's [tool.mypy]. A type error fails this test with mypy's
report (file, line, what is wrong)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_schemas_and_the_rules_core_pass_mypy_strict(tmp_path):
    mypy = Path(sys.executable).with_name("mypy")
    out = subprocess.run(
        [str(mypy), "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
