"""schemas/, with every action's module (schemas/actions/) and the pure rules core
(schemas/rules/), type-checks under mypy --strict: the files and options are pyproject.toml's
[tool.mypy]. A type error fails this test with mypy's report (file, line, what is wrong)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
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


def test_the_strict_list_names_the_whole_rules_package():
    """Every module of the rules core and of the actions is checked, a new action's module
    too: the list names the folder that holds them, not files one by one."""
    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    assert files == ["schemas"]
    assert (ROOT / "schemas" / "rules" / "__init__.py").is_file()
    assert (ROOT / "schemas" / "actions" / "__init__.py").is_file()
