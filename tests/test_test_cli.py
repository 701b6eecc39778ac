"""`irules test`, run as a real subprocess: exit codes, the report, and the JUnit file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from compiler.api import check_path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

# Each test starts a Python interpreter.
pytestmark = pytest.mark.slow

POLICY = 'team ops {\n  webhook "https://hooks.example.com/ops"\n}\n\nroute {\n  receiver ops\n}\n'
PASSING = 'test "everything goes to ops" {\n  alert { alertname = "A" }\n  expect receivers [ops]\n}\n'
FAILING = 'test "wrong on purpose" {\n  alert { alertname = "A" }\n  expect receivers [ops, ops]\n}\n'


def irules(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "IRULES_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr
    assert "internal error" not in result.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "policy.irules").write_text(POLICY + "\n" + PASSING + "\n" + FAILING, encoding="utf-8")
    return tmp_path


def count_tests(folder: Path, environment: str | None = None) -> int:
    return len(check_path(folder, environment).ruleset().tests)


@pytest.mark.parametrize("folder", ["production", "payments", "minimal"])
def test_example_tests_pass(folder: str):
    result = irules("test", f"examples/{folder}", "--env", "production")
    assert_no_traceback(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"{count_tests(EXAMPLES / folder, 'production')} passed, 0 failed\n"


def test_wrong_expectation_exits_1_with_its_location(project: Path):
    result = irules("test", "policy.irules", cwd=project)
    assert_no_traceback(result)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "policy.irules:14: FAILED: wrong on purpose",
        "  receivers (line 16): expected [ops, ops], got [ops]",
        "1 passed, 1 failed",
    ]


def test_verbose_lists_passing_tests(project: Path):
    result = irules("test", "policy.irules", "--verbose", cwd=project)
    assert "policy.irules:9: ok: everything goes to ops" in result.stdout


def test_junit_report_is_written(project: Path):
    result = irules("test", "policy.irules", "--junit", "report.xml", cwd=project)
    assert result.returncode == 1
    suite = ElementTree.parse(project / "report.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    failed = [case.get("name") for case in suite.findall("testcase") if case.find("failure") is not None]
    assert failed == ["wrong on purpose"]


def test_junit_report_of_an_example_has_no_failure(tmp_path: Path):
    report = tmp_path / "junit.xml"
    result = irules("test", "examples/production", "--junit", str(report))
    assert result.returncode == 0
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert suite.get("tests") == str(count_tests(EXAMPLES / "production"))
    assert suite.get("failures") == "0"


def test_unwritable_junit_path_exits_2(project: Path):
    result = irules("test", "policy.irules", "--junit", "missing/folder/report.xml", cwd=project)
    assert_no_traceback(result)
    assert result.returncode == 2
    assert "cannot write the JUnit report" in result.stderr


def test_rules_with_errors_exit_1_without_running_tests(tmp_path: Path):
    (tmp_path / "bad.irules").write_text(POLICY.replace("receiver ops", "receiver opz"), encoding="utf-8")
    result = irules("test", "bad.irules", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1
    assert "error[" in result.stderr
    assert "no test ran" in result.stderr


def test_missing_path_exits_2(tmp_path: Path):
    result = irules("test", "nowhere", cwd=tmp_path)
    assert result.returncode == 2


def test_copied_example_with_a_broken_expectation_fails(tmp_path: Path):
    copy = tmp_path / "production"
    shutil.copytree(EXAMPLES / "production", copy)
    tests = copy / "tests.irules"
    tests.write_text(tests.read_text().replace("expect receivers [devops]", "expect receivers [infrastructure]"))
    result = irules("test", str(copy))
    assert result.returncode == 1
    assert "tests.irules:14: FAILED: tool critical error goes to devops" in result.stdout
    assert "  receivers (line 21): expected [infrastructure], got [devops]" in result.stdout
