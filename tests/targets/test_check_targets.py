"""`irules check` reports what a target cannot generate, at the channel concerned (IR1201)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from compiler.api import check_path
from runtime.cli import app
from targets.check import target_diagnostics

ROUTE = """
route {
  receiver ops
}
"""


def project(tmp_path: Path, text: str) -> Path:
    (tmp_path / "rules.irules").write_text(text + ROUTE, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("rules", "line", "column", "message"),
    [
        (
            'receiver ops {\n  webhook "https://hooks.example.com/ops"\n  email "ops@example.com"\n}\n',
            3,
            3,
            "receiver `ops` has an `email` channel, but `settings` has no `smtp` server",
        ),
        (
            'receiver ops {\n  slack "#ops"\n}\n',
            2,
            3,
            "receiver `ops` has a `slack` channel without `url`, and `settings` has no `slack_api_url`",
        ),
        (
            'receiver ops {\n  sms "+4915112345678"\n}\n',
            2,
            3,
            "receiver `ops` has an `sms` channel that Alertmanager cannot send, and `settings` has no `daemon_url`",
        ),
    ],
)
def test_channel_without_settings_is_located(tmp_path: Path, rules: str, line: int, column: int, message: str) -> None:
    result = check_path(project(tmp_path, rules))
    assert result.diagnostics == []

    [diagnostic] = target_diagnostics(result)

    assert diagnostic.code == "IR1201"
    assert diagnostic.message.startswith(f"cannot generate the artifacts: {message}")
    assert diagnostic.span is not None
    assert (diagnostic.span.line, diagnostic.span.column) == (line, column)


def test_clean_project_has_no_target_problem(tmp_path: Path) -> None:
    result = check_path(project(tmp_path, 'receiver ops {\n  webhook "https://hooks.example.com/ops"\n}\n'))

    assert target_diagnostics(result) == []


def test_project_with_errors_is_not_rendered(tmp_path: Path) -> None:
    # `nobody` is an unknown receiver, so there is no ruleset to render, and only the checker's error shows.
    (tmp_path / "rules.irules").write_text('receiver ops {\n  email "ops@example.com"\n}\nroute {\n  receiver nobody\n}\n')
    result = check_path(tmp_path)

    assert result.has_errors
    assert target_diagnostics(result) == []


def test_check_command_exits_1_with_location(tmp_path: Path) -> None:
    folder = project(tmp_path, 'receiver ops {\n  email "ops@example.com"\n}\n')

    result = CliRunner().invoke(app, ["check", str(folder)])

    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{folder / 'rules.irules'}:2:3: error[IR1201]: cannot generate the artifacts: receiver `ops`")


def test_code_is_explained() -> None:
    result = CliRunner().invoke(app, ["codes", "IR1201"])

    assert result.exit_code == 0
    assert result.stdout.startswith("IR1201: the artifacts cannot be generated\n")
