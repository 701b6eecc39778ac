"""The `irules` command-line contract, run as real subprocesses.

Exit codes: 0 when the rules are clean (warnings allowed), 1 when they have
errors, 2 for usage errors (missing path, bad option, unknown code). No
input may make the command print a Python traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Each test starts a Python interpreter, which took about half a second on a 2-core test machine.
pytestmark = pytest.mark.slow

CLEAN = 'team ops {\n  slack "#ops" url secret("SLACK_OPS_WEBHOOK")\n}\n\nroute {\n  receiver ops\n}\n'
UNKNOWN_RECEIVER = 'team ops {\n  slack "#ops"\n}\n\nroute {\n  receiver ops\n  match severity = "critical" -> opz\n}\n'
TWO_SYNTAX_ERRORS = 'team ops {\n  slack "#ops" template\n}\n\nservice api {\n  tier\n}\n'


def irules(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m runtime.cli ARGS` in `cwd` with this repository importable."""
    env = {key: value for key, value in os.environ.items() if key != "IRULES_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Return a folder with one clean rules file, `ops.irules`."""
    (tmp_path / "ops.irules").write_text(CLEAN, encoding="utf-8")
    return tmp_path


def test_check_clean_file_exits_0(project: Path):
    result = irules("check", "ops.irules", cwd=project)
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert "error[" not in result.stderr


def test_check_clean_folder_exits_0(project: Path):
    result = irules("check", ".", cwd=project)
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr


def test_check_with_errors_exits_1(tmp_path: Path):
    (tmp_path / "bad.irules").write_text(UNKNOWN_RECEIVER, encoding="utf-8")
    result = irules("check", "bad.irules", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1
    assert "bad.irules:7:34: error[IR0203]: unknown receiver `opz` in route\n" in result.stderr
    assert result.stderr.endswith("1 error, 0 warnings\n")
    assert result.stdout == ""


def test_check_reports_both_syntax_errors(tmp_path: Path):
    (tmp_path / "broken.irules").write_text(TWO_SYNTAX_ERRORS, encoding="utf-8")
    result = irules("check", "broken.irules", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1
    assert "broken.irules:3:1: error[IR0103]" in result.stderr
    assert "broken.irules:7:1: error[IR0103]" in result.stderr
    assert result.stderr.endswith("2 errors, 0 warnings\n")


def test_check_missing_path_exits_2(tmp_path: Path):
    result = irules("check", "nowhere.irules", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 2
    assert "path not found: nowhere.irules" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--frobnicate", "ops.irules"],
        ["check", "--format", "yaml", "ops.irules"],
        ["check"],
        ["compile-everything"],
    ],
    ids=["unknown-option", "bad-format", "missing-path-argument", "unknown-command"],
)
def test_bad_usage_exits_2(project: Path, args: list[str]):
    result = irules(*args, cwd=project)
    assert_no_traceback(result)
    assert result.returncode == 2
    assert result.stdout == ""


def test_unknown_environment_exits_1(project: Path):
    (project / "environments.irules").write_text(
        "environment production {\n  defaults {\n    group_wait 10s\n  }\n}\n", encoding="utf-8"
    )
    result = irules("check", "--env", "prodution", ".", cwd=project)
    assert_no_traceback(result)
    assert result.returncode == 1
    assert "error[IR0202]: unknown environment `prodution`" in result.stderr
    assert "`production`" in result.stderr


def test_json_output_fields(tmp_path: Path):
    (tmp_path / "bad.irules").write_text(UNKNOWN_RECEIVER, encoding="utf-8")
    result = irules("check", "--format", "json", "bad.irules", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1
    diagnostics = json.loads(result.stdout)
    assert isinstance(diagnostics, list)
    assert len(diagnostics) == 1, diagnostics
    first = diagnostics[0]
    assert first["severity"] == "error"
    assert first["code"] == "IR0203"
    assert first["message"] == "unknown receiver `opz` in route"
    assert first["span"] == {"path": "bad.irules", "line": 7, "column": 34, "end_line": 7, "end_column": 37}
    assert {"label", "labels", "help"} <= first.keys()


def test_json_of_clean_file_is_empty(project: Path):
    result = irules("check", "--format", "json", "ops.irules", cwd=project)
    assert_no_traceback(result)
    assert result.returncode == 0
    assert json.loads(result.stdout) == []


def test_codes_prints_explanation(tmp_path: Path):
    result = irules("codes", "IR0203", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 0
    assert result.stdout.startswith("IR0203: unknown name\n\n")
    assert "namespace" in result.stdout


def test_codes_accepts_lowercase_code(tmp_path: Path):
    result = irules("codes", "ir0203", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("IR0203: unknown name")


def test_codes_without_argument_lists_every_code(tmp_path: Path):
    result = irules("codes", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 0
    assert "IR0101  unexpected character" in result.stdout.splitlines()
    assert "IR0203  unknown name" in result.stdout.splitlines()


def test_unknown_code_exits_2(tmp_path: Path):
    result = irules("codes", "IR9999", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 2
    assert "unknown diagnostic code 'IR9999'" in result.stderr


def test_non_utf8_file_is_reported(tmp_path: Path):
    (tmp_path / "latin1.irules").write_bytes('team caf\xe9 {\n  slack "#ops"\n}\n'.encode("latin-1"))
    result = irules("check", "latin1.irules", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1
    assert "error[IR1001]" in result.stderr


def test_binary_garbage_is_reported(tmp_path: Path):
    (tmp_path / "noise.irules").write_text("team \x00\x01 { @@@ ;;; }\n\x7f", encoding="utf-8")
    result = irules("check", "noise.irules", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1
    assert "noise.irules:1:6: error[IR0101]" in result.stderr


def test_help_exits_0(tmp_path: Path):
    result = irules("--help", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 0
    assert "check" in result.stdout
    assert "codes" in result.stdout
