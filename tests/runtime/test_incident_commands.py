"""The incident commands' usage: filter values, the two ways to name an incident, the severity's source, empty tables.

The commands run in this process on a real SQLite store. A `--daemon` URL that
nothing listens on shows which checks happen before the CLI contacts a daemon.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from runtime.cli import app
from runtime.client import BackendError, LocalBackend
from runtime.commands.incidents import OutputFormat, _print_incident
from runtime.store import database_url
from tests.runtime.daemon_process import FIXTURES, REPO

pytestmark = pytest.mark.slow

# Settings of the developer's shell that the CLI would read instead of its options.
CLI_ENVIRONMENT: dict[str, str | None] = {
    name: None
    for name in ("IRULES_STATE", "IRULES_DATABASE", "IRULES_DAEMON", "IRULES_API_TOKEN", "IRULES_ACTOR", "IRULES_RULES")
}
# Nothing listens on port 9 (discard) here, so a command that contacted the daemon would exit with 1, not 2.
NO_DAEMON = "http://127.0.0.1:9"
SEVERITY_REASON = "unknown severity 'urgent'; use one of critical, high, medium, low"
STATUS_REASON = "unknown status 'open'; use one of detected, triaged, investigating, mitigating, resolved, closed"


def irules(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env=CLI_ENVIRONMENT)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def error_text(result: Result) -> str:
    """Return stderr as one line: Rich draws Click's usage errors in a box and wraps them at the terminal width."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stderr).split())


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def incident(state: Path) -> str:
    """Open one incident by hand in the store at `state` and return its id."""
    created = irules("create", "--title", "Checkout slow", "--severity", "high", "--state", str(state), "--format", "json")
    assert created.exit_code == 0, created.output
    return json.loads(created.stdout)["id"]


def store_options(kind: str, state: Path) -> list[str]:
    """Return the options of one of the CLI's three store modes."""
    if kind == "state":
        return ["--state", str(state)]
    if kind == "database":
        return ["--database", database_url(state, None)]
    return ["--daemon", NO_DAEMON]


# ---------------------------------------------------------------- filter values


@pytest.mark.parametrize("mode", ["state", "database", "daemon"])
def test_list_unknown_severity_exits_2(mode: str, state: Path, incident: str) -> None:
    result = irules("incidents", "list", "--severity", "urgent", *store_options(mode, state))

    assert result.exit_code == 2
    assert f"Invalid value for '--severity': {SEVERITY_REASON}" in error_text(result)
    assert result.stdout == ""


@pytest.mark.parametrize("mode", ["state", "database", "daemon"])
def test_list_status_open_hints_open_flag(mode: str, state: Path, incident: str) -> None:
    result = irules("incidents", "list", "--status", "open", *store_options(mode, state))

    assert result.exit_code == 2
    reason = f"Invalid value for '--status': {STATUS_REASON}, or --open for incidents not yet resolved or closed"
    assert reason in error_text(result)
    assert result.stdout == ""


def test_list_rejects_one_bad_value_among_good(state: Path, incident: str) -> None:
    result = irules("incidents", "list", "--status", "detected", "--status", "done", "--state", str(state))

    assert result.exit_code == 2
    assert "unknown status 'done'; use one of detected, triaged" in error_text(result)
    assert "--open" not in error_text(result)


def test_list_valid_filters_still_match(state: Path, incident: str) -> None:
    result = irules("incidents", "list", "--status", "detected", "--severity", "high", "--state", str(state), "--format", "json")

    assert result.exit_code == 0, result.output
    assert [row["id"] for row in json.loads(result.stdout)] == [incident]


def test_update_unknown_severity_exits_2_unchanged(state: Path, incident: str) -> None:
    result = irules("update", incident, "--severity", "urgent", "--note", "typo", "--state", str(state))

    assert result.exit_code == 2
    assert f"Invalid value for '--severity': {SEVERITY_REASON}" in error_text(result)
    shown = json.loads(irules("incidents", "show", incident, "--state", str(state), "--format", "json").stdout)
    assert shown["severity"] == "high"
    assert [entry["kind"] for entry in shown["timeline"]] == ["incident.detected"]


def test_create_unknown_severity_exits_2() -> None:
    result = irules("create", "--title", "Checkout slow", "--severity", "urgent", "--daemon", NO_DAEMON)

    assert result.exit_code == 2
    assert SEVERITY_REASON in error_text(result)


def test_local_backend_list_raises_backend_error(state: Path, incident: str) -> None:
    backend = LocalBackend(database_url(state, None))
    try:
        with pytest.raises(BackendError, match=re.escape(SEVERITY_REASON)):
            backend.list(severity=["urgent"])
    finally:
        backend.close()


# ---------------------------------------------------------------- naming the incident


@pytest.mark.parametrize(
    "command",
    [
        ["incidents", "show"],
        ["ack"],
        ["resolve", "--note", "fixed"],
        ["update", "--assignee", "bob"],
    ],
    ids=["show", "ack", "resolve", "update"],
)
@pytest.mark.parametrize("form", ["argument", "option", "both"])
def test_incident_named_either_way(command: list[str], form: str, state: Path, incident: str) -> None:
    named = {"argument": [incident], "option": ["--incident-id", incident], "both": [incident, "--incident-id", incident]}

    result = irules(*command, *named[form], "--state", str(state), "--format", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == incident


def test_incident_number_as_option(state: Path, incident: str) -> None:
    result = irules("incidents", "show", "--incident-id", "1", "--state", str(state), "--format", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == incident


@pytest.mark.parametrize("command", [["incidents", "show"], ["ack"], ["resolve"], ["update", "--note", "x"]])
def test_two_different_incidents_exit_2(command: list[str]) -> None:
    result = irules(*command, "INC-2026-0001", "--incident-id", "INC-2026-0002", "--daemon", NO_DAEMON)

    assert result.exit_code == 2
    assert result.stderr == (
        "irules: the INCIDENT_ID argument 'INC-2026-0001' and --incident-id 'INC-2026-0002' name different incidents; "
        "pass only one\n"
    )


@pytest.mark.parametrize("command", [["incidents", "show"], ["ack"], ["resolve"], ["update", "--note", "x"]])
def test_missing_incident_exits_2(command: list[str]) -> None:
    result = irules(*command, "--daemon", NO_DAEMON)

    assert result.exit_code == 2
    assert result.stderr == (
        "irules: missing incident: pass its id, such as INC-2026-0042, as an argument or with --incident-id\n"
    )


# ---------------------------------------------------------------- where the severity came from


def incident_row(severity: str | None, severity_source: str | None) -> dict[str, Any]:
    return {
        "id": "INC-2026-0001",
        "title": "Checkout slow",
        "status": "detected",
        "severity": severity,
        "severity_source": severity_source,
    }


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("rule", "  severity: high (set by a severity rule)"),
        ("fallback", "  severity: high (the fallback level of the severity rules)"),
        ("classifier", "  severity: high (set by the classifier)"),
        ("source", "  severity: high (set by the source)"),
        ("person", "  severity: high (set by a person)"),
        ("pager", "  severity: high (set by pager)"),
        (None, "  severity: high"),
    ],
)
def test_show_names_severity_source(source: str | None, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    _print_incident(incident_row("high", source), OutputFormat.TEXT)

    assert capsys.readouterr().out.splitlines()[2] == line


def test_show_without_severity_has_no_source(capsys: pytest.CaptureFixture[str]) -> None:
    _print_incident(incident_row(None, "fallback"), OutputFormat.TEXT)

    assert "severity" not in capsys.readouterr().out


def test_azure_sev1_shows_source(state: Path) -> None:
    result = irules(
        "handle",
        "--alert-data",
        str(FIXTURES / "azure" / "common-metric-fired.json"),
        "--source",
        "azure",
        "--rules",
        str(REPO / "examples" / "production"),
        "--env",
        "production",
        "--state",
        str(state),
    )

    assert result.exit_code == 0, result.output
    # Sev1 is Azure's `error`, which maps to `high`; no severity rule of the example matches the alert.
    assert "  severity: high (set by the source)" in result.stdout.splitlines()


def test_show_by_hand_names_person(state: Path, incident: str) -> None:
    result = irules("incidents", "show", incident, "--state", str(state))

    assert result.exit_code == 0, result.output
    assert "  severity: high (set by a person)" in result.stdout.splitlines()


# ---------------------------------------------------------------- empty tables


def test_empty_notifications_print_header(state: Path, incident: str) -> None:
    result = irules("notifications", "list", "--state", str(state))

    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["ID", "CREATED", "(UTC)", "INCIDENT", "EVENT", "CHANNEL", "STATUS", "TRIES", "DETAIL"]


def test_empty_incidents_print_header(state: Path, incident: str) -> None:
    result = irules("incidents", "list", "--status", "closed", "--state", str(state))

    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["ID", "STATUS", "SEVERITY", "TEAM", "ALERTS", "CREATED", "(UTC)", "TITLE"]


def test_empty_dead_letters_print_header(state: Path, incident: str) -> None:
    result = irules("dead-letters", "list", "--state", str(state))

    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["ID", "RECEIVED", "(UTC)", "SOURCE", "STATUS", "REPLAY", "REASON"]


def test_shown_alerts_and_timeline_line_up(capsys: pytest.CaptureFixture[str]) -> None:
    row = {
        "id": "INC-2026-0001",
        "title": "Checkout slow",
        "status": "detected",
        "alerts": [
            {"status": "firing", "name": "A", "labels": {"service": "api"}},
            {"status": "resolved", "name": "DatabaseConnectionsExhausted", "labels": {"service": "database"}},
        ],
        "timeline": [
            {"at": "2026-12-05T17:49:01.5Z", "kind": "incident.detected", "actor": "irules", "message": "Detected"},
            {"at": "2026-12-05T17:50:02Z", "kind": "incident.acknowledged", "actor": "slack:U00000001 (zoe)", "message": "Acked"},
        ],
    }
    _print_incident(row, OutputFormat.TEXT)
    lines = capsys.readouterr().out.splitlines()

    assert lines[-6:] == [
        "  alerts (2):",
        "    firing   A                             {service=api}",
        "    resolved DatabaseConnectionsExhausted  {service=database}",
        "  timeline (UTC):",
        "    2026-12-05 17:49:01  incident.detected      irules                 Detected",
        "    2026-12-05 17:50:02  incident.acknowledged  slack:U00000001 (zoe)  Acked",
    ]


def test_actor_without_terminal_or_user_is_login_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import pwd

    from runtime.commands.incidents import _actor

    def no_terminal() -> str:
        raise OSError("no controlling terminal")

    monkeypatch.setattr(os, "getlogin", no_terminal)
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)

    # A cron or CI job has neither a terminal nor USER, and its actions still name the account.
    assert _actor(None) == pwd.getpwuid(os.getuid()).pw_name
    assert _actor("alice") == "alice"
