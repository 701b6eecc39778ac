"""`runtime.faults`: the crash points kill a real child process, on the visit `IRULES_CRASH_AT` names."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from runtime import faults
from tests.runtime.daemon_process import REPO, child_environment

# Reaches `outbox.after_send` three times and prints after each visit.
PROGRAM = """
from runtime.faults import crash_point
for visit in (1, 2, 3):
    crash_point("outbox.after_send")
    print(visit, flush=True)
"""


def run_program(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=REPO,
        env=child_environment(environment),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_crash_point_kills_on_named_visit() -> None:
    result = run_program({faults.ENVIRONMENT_VARIABLE: "outbox.after_send:2"})
    assert result.returncode == -signal.SIGKILL
    assert result.stdout == "1\n"


@pytest.mark.slow
def test_crash_point_kills_on_first_visit() -> None:
    result = run_program({faults.ENVIRONMENT_VARIABLE: "outbox.after_send"})
    assert result.returncode == -signal.SIGKILL
    assert result.stdout == ""


@pytest.mark.slow
def test_other_point_does_not_kill(tmp_path) -> None:
    trace = tmp_path / "trace.txt"
    result = run_program({faults.ENVIRONMENT_VARIABLE: "outbox.after_lease", faults.TRACE_VARIABLE: str(trace)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n2\n3\n"
    assert trace.read_text(encoding="utf-8") == "outbox.after_send\n"


@pytest.mark.slow
def test_unset_variable_does_nothing() -> None:
    result = run_program({})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n2\n3\n"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("", (None, 0)),
        ("step.after_exit", ("step.after_exit", 1)),
        ("step.after_exit:3", ("step.after_exit", 3)),
        (" ingest.after_commit ", ("ingest.after_commit", 1)),
    ],
)
def test_parse_accepts_point_and_visit(setting: str, expected: tuple[str | None, int]) -> None:
    assert faults._parse(setting) == expected


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("outbox.after_sent", "IRULES_CRASH_AT: unknown crash point 'outbox.after_sent'; known points: ingest.after_commit, "),
        (
            "outbox.after_send:0",
            "IRULES_CRASH_AT: invalid visit '0' in 'outbox.after_send:0'; expected POINT or POINT:N with N >= 1",
        ),
        (
            "outbox.after_send:x",
            "IRULES_CRASH_AT: invalid visit 'x' in 'outbox.after_send:x'; expected POINT or POINT:N with N >= 1",
        ),
    ],
)
def test_parse_rejects_invalid_setting(setting: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        faults._parse(setting)
    assert str(raised.value).startswith(message)


def test_every_point_has_a_description() -> None:
    assert len(faults.POINTS) == 11
    assert all(name.count(".") == 1 and description for name, description in faults.POINTS.items())
