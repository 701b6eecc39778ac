"""`irules test` on scenario tests: the simulation on a virtual clock, and the mismatches it reports."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from compiler.api import check_path, check_text
from runtime.cli import app
from runtime.scenarios import run_scenario
from tests.conftest import EXAMPLES, REPO

# Every test runs at least one simulation over a scratch SQLite store.
pytestmark = pytest.mark.slow

# Lines 1-36. SMS goes through the daemon's outbox, so every message is a page at the virtual
# time the notifier queues it: the group wait for `opened`, at once for the other events.
POLICY = """\
settings {
  daemon_url "https://irules.example.com"
}

team database-oncall {
  sms "+4930123456789"
  escalation database
}

team management {
  sms "+4930987654321"
}

route {
  receiver database-oncall
  group_wait 30s
  group_interval 5m
  group_by [alertname]
}

escalation database {
  after 5m unacknowledged escalate
  after 10m unacknowledged page management
}

runbook restart-postgres "Restart PostgreSQL" {
  when label.alertname == "PostgresDown"
  auto
  step check {
    query prometheus "pg_up"
  }
  step restart {
    when steps.check.value == 0
    run ["systemctl", "restart", "postgresql"]
  }
}
"""
# The test block starts on line 38, after the policy and a blank line; its expectations on line 43.
OUTAGE = """
test "database outage pages the on-call, then escalates" {
  at "2026-03-02T10:00:00Z"
  fire { alertname = "PostgresDown", service = "database", severity = "critical" } at 0m
  ack { alertname = "PostgresDown" } by "alice" at 7m
  resolve { alertname = "PostgresDown", service = "database" } at 12m
  expect incidents 1
  expect page database-oncall opened at 30s
  expect no page management
  expect escalation level 1 at 5m
  expect runbook restart-postgres path [check, restart]
}
"""
ALL_PAGES = "at 30s (opened), 5m (escalated), 7m (acknowledged), 12m (resolved)"


def project(tmp_path: Path, tests: str) -> Path:
    (tmp_path / "policy.irules").write_text(POLICY + tests, encoding="utf-8")
    return tmp_path


FIRE = '  fire { alertname = "PostgresDown", service = "database", severity = "critical" } at 0m\n'
ACK = '  ack { alertname = "PostgresDown" } by "alice" at 7m\n'
RESOLVE = '  resolve { alertname = "PostgresDown", service = "database" } at 12m\n'


def outage(*expectations: str, events: str = FIRE + ACK + RESOLVE) -> str:
    """Return the outage scenario with other events and expectations; with its own three events, the first expectation is on line 43."""
    head = OUTAGE.split("  fire {")[0]
    return head + events + "".join(f"  {line}\n" for line in expectations) + "}\n"


def problems(*expectations: str, events: str = FIRE + ACK + RESOLVE) -> list[str]:
    result = check_text(POLICY + outage(*expectations, events=events), "policy.irules")
    assert not result.has_errors, [item.message for item in result.diagnostics]
    ruleset = result.ruleset()
    [case] = ruleset.tests
    return run_scenario(ruleset, case).problems()


# ---------------------------------------------------------------- the command


def test_outage_scenario_passes(tmp_path: Path):
    result = CliRunner().invoke(app, ["test", str(project(tmp_path, OUTAGE)), "--verbose"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{tmp_path / 'policy.irules'}:38: ok: database outage pages the on-call, then escalates\n1 passed, 0 failed\n"
    )


def test_wrong_page_time_names_expected_and_actual(tmp_path: Path):
    folder = project(tmp_path, OUTAGE.replace("opened at 30s", "opened at 1m"))
    result = CliRunner().invoke(app, ["test", str(folder)])
    assert result.exit_code == 1
    assert result.stdout == (
        f"{folder / 'policy.irules'}:38: FAILED: database outage pages the on-call, then escalates\n"
        f"  page database-oncall opened (line 44): expected at 1m, got {ALL_PAGES}\n"
        "0 passed, 1 failed\n"
    )


def test_scenario_failure_in_junit(tmp_path: Path):
    folder = project(tmp_path, OUTAGE.replace("expect incidents 1", "expect incidents 2"))
    report = tmp_path / "report.xml"
    result = CliRunner().invoke(app, ["test", str(folder), "--junit", str(report)])
    assert result.exit_code == 1
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "1", "0")
    failure = suite.find("testcase/failure")
    assert failure.get("message") == "incidents (line 43): expected 2, got 1 (`PostgresDown`)"


def test_command_restores_the_log_level(tmp_path: Path):
    logger = logging.getLogger("irules")
    before = logger.level
    CliRunner().invoke(app, ["test", str(project(tmp_path, OUTAGE))])
    assert logger.level == before


def test_production_scenarios_pass():
    ruleset = check_path(EXAMPLES / "production", "production").ruleset()
    scenarios = [case for case in ruleset.tests if case.scenario is not None]
    assert len(scenarios) == 3
    assert [run_scenario(ruleset, case).problems() for case in scenarios] == [[], [], []]


def test_real_process_exit_code_on_failed_scenario(tmp_path: Path):
    folder = project(tmp_path, OUTAGE.replace("level 1 at 5m", "level 1 at 6m"))
    env = {key: value for key, value in os.environ.items() if key != "IRULES_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "test", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "  escalation level 1 (line 46): expected level 1 at 6m, got level 1 at 5m (escalate)\n" in done.stdout
    assert done.stderr == ""


# ---------------------------------------------------------------- what each expectation compares


def test_every_page_expectation_holds():
    assert (
        problems(
            "expect page database-oncall",
            "expect page database-oncall escalated at 5m",
            "expect page database-oncall acknowledged at 7m",
            "expect page database-oncall resolved at 12m",
            "expect no page database-oncall reminder",
        )
        == []
    )


def test_page_of_another_event_does_not_count():
    assert problems("expect page database-oncall escalated at 30s") == [
        f"page database-oncall escalated (line 43): expected at 30s, got {ALL_PAGES}"
    ]


def test_unexpected_page_is_reported():
    assert problems("expect no page database-oncall escalated") == [
        "no page database-oncall escalated (line 43): expected no page, got at 5m (escalated)"
    ]


def test_missing_page_is_reported():
    assert problems("expect page management") == ["page management (line 43): expected a page, got no page"]


def test_unacknowledged_incident_pages_management_at_ten_minutes():
    events = FIRE + '  ack { alertname = "PostgresDown" } by "alice" at 20m\n'
    scenario = problems(
        "expect page management escalated at 10m",
        "expect escalation level 1 to management at 10m",
        events=events,
    )
    assert scenario == []


def test_escalation_at_wrong_time_lists_steps():
    assert problems("expect escalation level 1 at 10m") == [
        "escalation level 1 (line 43): expected level 1 at 10m, got level 1 at 5m (escalate)"
    ]


def test_escalation_to_wrong_receiver_fails():
    assert problems("expect escalation level 1 to management") == [
        "escalation level 1 (line 43): expected level 1 to management, got level 1 at 5m (escalate)"
    ]


def test_unexpected_escalation_is_reported():
    assert problems("expect no escalation") == ["no escalation (line 43): expected no escalation, got level 1 at 5m (escalate)"]


def test_acknowledgement_before_five_minutes_stops_escalation():
    events = FIRE + '  ack { alertname = "PostgresDown" } by "bob" at 2m\n' + RESOLVE
    assert problems("expect no escalation", "expect no page management", events=events) == []


def test_runbook_path_mismatch_names_both_paths():
    assert problems("expect runbook restart-postgres path [check]") == [
        "runbook restart-postgres (line 43): expected path [check], got path [check, restart] ([restart] decided only by a real run)"
    ]


def test_runbook_at_wrong_time_fails():
    assert problems("expect runbook restart-postgres at 1m") == [
        "runbook restart-postgres (line 43): expected a run at 1m, got a run at 0s"
    ]


def test_unexpected_runbook_is_reported():
    assert problems("expect no runbook restart-postgres") == [
        "no runbook restart-postgres (line 43): expected no run, got a run at 0s"
    ]


def test_incident_count_mismatch_lists_titles():
    events = FIRE + '  fire { alertname = "CacheDown", service = "cache", severity = "critical" } at 1m\n'
    assert problems("expect incidents 1", events=events) == [
        "incidents (line 42): expected 1, got 2 (`PostgresDown`, `CacheDown`)"
    ]


def test_acknowledgement_before_the_alert_fails():
    events = '  ack { alertname = "PostgresDown" } by "bob" at 0m\n' + FIRE.replace("at 0m", "at 1m")
    assert problems("expect incidents 1", events=events) == [
        'ack by "bob" (line 40): expected an incident to acknowledge at 0s, got no incident contains the alert'
    ]


def test_person_resolves_the_incident():
    events = FIRE + ACK + '  resolve { alertname = "PostgresDown" } by "carol" at 8m\n'
    assert problems("expect page database-oncall resolved at 8m", "expect incidents 1", events=events) == []


def test_events_written_out_of_order_apply_by_time():
    lines = OUTAGE.splitlines(keepends=True)
    # Move the `resolve` line (12m) above the `fire` line (0m).
    reordered = "".join([*lines[:3], lines[5], lines[3], lines[4], *lines[6:]])
    result = check_text(POLICY + reordered, "policy.irules")
    ruleset = result.ruleset()
    assert run_scenario(ruleset, ruleset.tests[0]).problems() == []
