"""`irules assist` and the session link command, run through Typer's test runner on a real SQLite store."""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from compiler.api import compile_rules
from runtime.alerts import Alert
from runtime.commands.assist import link_session_command, printable, register
from runtime.pipeline import Accepted, Pipeline, accept
from runtime.policy import Policy
from runtime.sources.base import Inbound, Outcome
from runtime.store import Store, database_url
from tests.triage import fake_claude
from tests.triage.fake_anthropic import API_KEY, FakeAnthropic

T0 = datetime.datetime(2026, 3, 8, 10, 0, tzinfo=datetime.UTC)

RULES = """
settings {
  incident_id_format "INC-{number}"
}

receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
  group_by [alertname]
}

service api {
  depends_on [database]
  match service = "api"
}

service database {
  match service = "database"
}

runbook look "Collect the api's logs" {
  when label.alertname == "ApiDown"
  auto
  step logs {
    run ["kubectl", "logs", "--", "{{ label.pod }}"]
    read_only
  }
}

runbook fix "Restart the api pod" {
  when label.alertname == "ApiDown"
  auto
  step restart_it {
    restart pod "{{ label.pod }}"
  }
}
"""

ESCAPE = "\x1b[2J\x1b]0;owned\x07"


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "rules.irules").write_text(RULES, encoding="utf-8")
    return folder


@pytest.fixture
def state(tmp_path: Path, rules: Path) -> Path:
    folder = tmp_path / "state"
    store = Store.open(database_url(folder))
    policy = Policy(compile_rules(rules))
    try:
        for at, name, labels, summary in (
            (T0, "DbDown", {"service": "database"}, f"database gone {ESCAPE}"),
            (T0 + datetime.timedelta(minutes=1), "ApiDown", {"service": "api", "pod": "api-1"}, "api down"),
        ):
            alert = Alert(
                source="alertmanager",
                name=name,
                status="firing",
                labels={"alertname": name, **labels},
                annotations={"summary": summary},
            )
            accept(store, [Accepted("alertmanager", Inbound(b"{}", {}, at), Outcome("alertmanager", "alerts", [alert]))])
        Pipeline(store, lambda: policy).process_pending()
    finally:
        store.close()
    return folder


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)
    application.command(name="link-session")(link_session_command)
    return application


def run(app: typer.Typer, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env)


def test_register_adds_the_assist_command() -> None:
    application = typer.Typer()
    register(application)
    assert [command.name for command in application.registered_commands] == ["assist"]


def test_text_output_lists_verdicts(app: typer.Typer, rules: Path, state: Path) -> None:
    result = run(app, "assist", "--incident-id", "INC-2", "--focus", "remediation", "--rules", str(rules), "--state", str(state))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "INC-2: assisted diagnosis of the remediation, by local"
    assert "  runbook fix (confidence 0.90): offered for approval" in lines
    assert "     why: step `restart_it` is mutating with risk medium" in lines
    assert "  runbook look (confidence 0.90): would run automatically" in lines
    assert f"     start it with: irules remediate --incident-id INC-2 --runbook-id fix --state {state}" in lines
    assert any(line.startswith("citations: runbook:fix, runbook:look") for line in lines)


def test_json_output(app: typer.Typer, rules: Path, state: Path) -> None:
    result = run(
        app,
        "assist",
        "--incident-id",
        "INC-2",
        "--focus",
        "root-cause",
        "--rules",
        str(rules),
        "--state",
        str(state),
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["incident"] == "INC-2"
    assert shown["provider"] == "local"
    assert {item["name"]: item["verdict"] for item in shown["recommendations"]} == {"fix": "offered", "look": "would_run"}
    assert shown["hypotheses"][0]["title"] == "dependency `database` of `api` has an open incident, INC-1"


def test_alert_text_cannot_drive_the_terminal(app: typer.Typer, rules: Path, state: Path) -> None:
    result = run(app, "assist", "--incident-id", "INC-2", "--focus", "root-cause", "--rules", str(rules), "--state", str(state))
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert "database gone \\u001b[2J\\u001b]0;owned\\u0007" in result.stdout


def test_printable_escapes_control_and_format_characters() -> None:
    assert printable("a\nb\x1b\u202ec\u2028") == "a\\u000ab\\u001b\\u202ec\\u2028"
    assert printable("plain text, ünïcode") == "plain text, ünïcode"


def test_unknown_incident_exits_1(app: typer.Typer, rules: Path, state: Path) -> None:
    result = run(app, "assist", "--incident-id", "INC-9", "--focus", "impact", "--rules", str(rules), "--state", str(state))
    assert result.exit_code == 1
    assert result.stderr == "irules: incident 'INC-9' not found\n"


def test_store_option_is_required(app: typer.Typer, rules: Path) -> None:
    result = run(app, "assist", "--incident-id", "INC-2", "--focus", "impact", "--rules", str(rules))
    assert result.exit_code == 2
    assert "pass exactly one of --state DIR or --database URL" in result.stderr


def test_missing_postmortems_folder_exits_2(app: typer.Typer, rules: Path, state: Path, tmp_path: Path) -> None:
    result = run(
        app,
        "assist",
        "--incident-id",
        "INC-2",
        "--focus",
        "impact",
        "--rules",
        str(rules),
        "--state",
        str(state),
        "--postmortems",
        str(tmp_path / "absent"),
    )
    assert result.exit_code == 2
    assert "post-mortems folder" in result.stderr


def test_anthropic_without_a_key_exits_2(app: typer.Typer, rules: Path, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IRULES_ANTHROPIC_API_KEY", raising=False)
    args = ("assist", "--incident-id", "INC-2", "--focus", "impact", "--rules", str(rules), "--state", str(state))
    result = run(app, *args, "--provider", "anthropic", env={"IRULES_ASSIST_MODEL": "claude-test"})
    assert result.exit_code == 2
    assert result.stderr == "irules: the anthropic provider needs IRULES_ANTHROPIC_API_KEY; set it in the environment\n"


def test_anthropic_provider_from_environment(app: typer.Typer, rules: Path, state: Path) -> None:
    answer = {"summary": "restart it", "recommendations": [{"kind": "runbook", "name": "fix", "confidence": 0.95}]}
    with FakeAnthropic(answer) as server:
        env = {"IRULES_ANTHROPIC_API_KEY": API_KEY, "IRULES_ASSIST_MODEL": "claude-test", "IRULES_ANTHROPIC_URL": server.url}
        args = ("assist", "--incident-id", "INC-2", "--focus", "remediation", "--rules", str(rules), "--state", str(state))
        result = run(app, *args, "--provider", "anthropic", "--format", "json", env=env)
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["model"] == "claude-test"
    assert shown["recommendations"][0]["verdict"] == "offered"
    assert shown["usage"] == {"input_tokens": 100, "output_tokens": 50, "cost_usd": 0.0}


def claude_env(tmp_path: Path, mode: str) -> dict[str, str]:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    target = folder / "claude"
    target.write_text(f"#!{sys.executable}\n" + Path(fake_claude.__file__).read_text(encoding="utf-8"), encoding="utf-8")
    target.chmod(0o755)
    return {
        "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "IRULES_CLAUDE_ENV": "FAKE_CLAUDE_MODE",
        "FAKE_CLAUDE_MODE": mode,
    }


def test_claude_code_prints_the_resume_command(app: typer.Typer, rules: Path, state: Path, tmp_path: Path) -> None:
    args = ("assist", "--incident-id", "INC-2", "--focus", "root-cause", "--rules", str(rules), "--state", str(state))
    result = run(app, *args, "--provider", "claude-code", env=claude_env(tmp_path, "success"))
    assert result.exit_code == 0, result.stderr
    assert f"session: {fake_claude.SESSION} (claude-code)" in result.stdout
    assert f"resume with: cd {rules.resolve()} && claude -r {fake_claude.SESSION}" in result.stdout
    assert "usage: 900 input tokens, 120 output tokens, $0.0123" in result.stdout


def test_claude_code_failure_keeps_the_session(app: typer.Typer, rules: Path, state: Path, tmp_path: Path) -> None:
    args = ("assist", "--incident-id", "INC-2", "--focus", "root-cause", "--rules", str(rules), "--state", str(state))
    result = run(app, *args, "--provider", "claude-code", env=claude_env(tmp_path, "max_turns"))
    assert result.exit_code == 1
    assert f"resume it with: claude -r {fake_claude.SESSION}" in result.stderr
    assert "claude ended with error_max_turns" in result.stderr


def test_link_session_command(app: typer.Typer, state: Path) -> None:
    first = run(app, "link-session", "--incident-id", "INC-1", "--session", "abc-123", "--state", str(state), "--as", "bob")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == "INC-1: claude-code session abc-123 linked\nresume with: claude -r abc-123\n"
    again = run(app, "link-session", "--incident-id", "INC-1", "--session", "abc-123", "--state", str(state))
    assert again.stdout.startswith("INC-1: claude-code session abc-123 was already linked\n")


def test_link_session_command_json(app: typer.Typer, state: Path) -> None:
    args = ("link-session", "--incident-id", "INC-2", "--session", "s1", "--provider", "anthropic", "--state", str(state))
    result = run(app, *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "incident": "INC-2",
        "provider": "anthropic",
        "session_id": "s1",
        "created": True,
        "resume": None,
    }


def test_link_session_command_rejects_a_bad_id(app: typer.Typer, state: Path) -> None:
    result = run(app, "link-session", "--incident-id", "INC-1", "--session", "$(id)", "--state", str(state))
    assert result.exit_code == 2
    assert "invalid session id '$(id)'" in result.stderr


def test_link_session_command_unknown_incident(app: typer.Typer, state: Path) -> None:
    result = run(app, "link-session", "--incident-id", "INC-7", "--session", "abc", "--state", str(state))
    assert result.exit_code == 1
    assert result.stderr == "irules: incident 'INC-7' not found\n"
