"""Packaging: a plain `pip install .` must ship every module, the grammar and the standard library."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for top in ("compiler", "runtime", "targets"):
        for init in (REPO / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(REPO).parts))
    assert sorted(found - listed) == []


@pytest.mark.slow
def test_wheel_contains_modules_grammar_and_stdlib(tmp_path: Path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("irules-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        path.relative_to(REPO).as_posix() for top in ("compiler", "runtime", "targets") for path in (REPO / top).rglob("*.py")
    }
    assert sorted(expected - names) == []
    assert "compiler/grammar/irules.lark" in names
    stdlib = {f"irules_rules/{path.name}" for path in (REPO / "rules").glob("*.irules")}
    assert stdlib and sorted(stdlib - names) == []
