"""Golden diagnostics: each malformed input in `invalid/` is checked like `irules check` does.

Every `invalid/<case>.irules` must make the checker exit with code 1, without a
traceback, and print exactly its `<case>.expected`. The checker runs with the
working directory `invalid/`, so paths in the goldens are bare file names.

To rewrite the goldens after an intended change of wording, run
`IRULES_BLESS=1 python -m pytest tests/compiler/test_invalid_golden.py` and
review the diff. A case may pass extra options to `irules check` on its first
line, for example `# check-args: --env production`.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compiler.codes import all_codes
from runtime.cli import app

INVALID = Path(__file__).resolve().parent / "invalid"
CASES = sorted(INVALID.glob("*.irules"))
MIN_CASES = 40
BLESS = os.environ.get("IRULES_BLESS") == "1"

_ARGS_DIRECTIVE = re.compile(r"^# check-args:(?P<args>.*)$")
_LOCATED_FIRST_LINE = re.compile(
    r"^(?P<path>[\w.-]+\.irules):(?P<line>[1-9]\d*):(?P<column>[1-9]\d*): "
    r"error\[(?P<code>IR\d{4})\]: (?P<message>\S.*)$"
)
_UNLOCATED_FIRST_LINE = re.compile(r"^error\[(?P<code>IR\d{4})\]: (?P<message>\S.*)$")
# Codes about the command line, a whole file or the whole project, which have no place in the source to point at.
UNLOCATED_CODES = {"IR0202", "IR0401", "IR1001", "IR1002"}


def _case_id(path: Path) -> str:
    return path.stem


def _check_args(case: Path) -> list[str]:
    """Return the options of the case's `# check-args:` line, if its first line is one."""
    first_line = case.read_text(encoding="utf-8").partition("\n")[0]
    directive = _ARGS_DIRECTIVE.match(first_line)
    return shlex.split(directive.group("args")) if directive else []


def _run_check(case: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str, BaseException | None]:
    """Run `irules check` on `case` in-process from inside `invalid/`, and return exit code, stdout, stderr and exception."""
    monkeypatch.chdir(INVALID)
    monkeypatch.delenv("IRULES_DEBUG", raising=False)
    result = CliRunner().invoke(app, ["check", *_check_args(case), case.name])
    return result.exit_code, result.stdout, result.stderr, result.exception


def test_suite_has_at_least_40_cases():
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} golden cases in {INVALID}; at least {MIN_CASES} are expected"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_invalid_input_matches_golden(case: Path, monkeypatch: pytest.MonkeyPatch):
    exit_code, stdout, stderr, exception = _run_check(case, monkeypatch)
    expected_path = case.with_suffix(".expected")

    assert exception is None or isinstance(exception, SystemExit), f"checker raised {exception!r}"
    assert "Traceback" not in stderr
    assert "internal error" not in stderr
    assert stdout == "", "text diagnostics belong on stderr"
    assert exit_code == 1, f"`irules check {case.name}` exited with {exit_code}, expected 1:\n{stderr}"

    if BLESS:
        expected_path.write_text(stderr, encoding="utf-8")
    assert expected_path.exists(), (
        f"{expected_path.name} is missing; create it with "
        f"`IRULES_BLESS=1 python -m pytest tests/compiler/test_invalid_golden.py -k {case.stem}` and read it"
    )
    assert stderr == expected_path.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_golden_first_line_format(case: Path):
    expected_path = case.with_suffix(".expected")
    if not expected_path.exists():
        pytest.fail(f"{expected_path.name} is missing; `test_invalid_input_matches_golden` says how to create it")
    first_line = expected_path.read_text(encoding="utf-8").partition("\n")[0]
    located = _LOCATED_FIRST_LINE.match(first_line)
    unlocated = _UNLOCATED_FIRST_LINE.match(first_line)
    parsed = located or unlocated

    assert parsed is not None, f"first line is not `NAME.irules:LINE:COL: error[IRxxxx]: message`: {first_line!r}"
    if located:
        assert located.group("path") == case.name
    else:
        assert parsed.group("code") in UNLOCATED_CODES, f"{parsed.group('code')} must point at a place in the file"
    assert parsed.group("code") in all_codes(), f"{parsed.group('code')} has no entry for `irules codes`"
    assert not parsed.group("message")[0].isupper(), "messages start in lowercase"
    assert not parsed.group("message").endswith("."), "messages end without a period"


def test_every_golden_has_its_case():
    orphans = sorted(path.name for path in INVALID.glob("*.expected") if not path.with_suffix(".irules").exists())
    assert orphans == []
