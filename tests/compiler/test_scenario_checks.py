"""Checks of scenario tests: shape, start, times, picked alerts and names, each with its code, span and caret."""

from __future__ import annotations

import pytest

from compiler.api import check_text
from compiler.codes import all_codes, explain
from compiler.diagnostics import Diagnostic, render_text

# Lines 1-9: the policy. Test blocks start on line 10.
POLICY = """\
team database-oncall { webhook "https://hooks.example.com/db" }
team management { webhook "https://hooks.example.com/management" }
route { receiver database-oncall }
runbook restart-postgres "Restart PostgreSQL" {
  when label.alertname == "PostgresDown"
  auto
  step check { query prometheus "pg_up" }
  step restart { run ["true"] }
}
"""
START = '  at "2026-03-02T10:00:00Z"\n'
FIRE = '  fire { alertname = "PostgresDown", service = "database" } at 0m\n'


def diagnostics_of(test_body: str, title: str = "t") -> list[Diagnostic]:
    result = check_text(POLICY + f'test "{title}" {{\n' + test_body + "}\n", "policy.irules")
    return [item for item in result.diagnostics if item.severity == "error"]


def located(diagnostics: list[Diagnostic]) -> list[tuple[str, int, int, int]]:
    """Return (code, line, column, end column) of each diagnostic."""
    return [(item.code, item.span.line, item.span.column, item.span.end_column) for item in diagnostics]


def test_valid_scenario_has_no_diagnostics():
    body = START + FIRE + '  ack { alertname = "PostgresDown" } by "alice" at 7m\n  expect page database-oncall opened at 30s\n'
    assert diagnostics_of(body) == []


# ---------------------------------------------------------------- shape


def test_single_alert_line_in_scenario_is_rejected():
    found = diagnostics_of(START + '  alert { alertname = "PostgresDown" }\n' + FIRE)
    assert located(found) == [("IR1101", 12, 3, 8)]
    assert found[0].message == "`alert` cannot be used in a scenario test"
    assert [(label.span.line, label.message) for label in found[0].labels] == [(13, "`fire` makes this test a scenario")]


def test_single_alert_expectation_in_scenario_is_rejected():
    found = diagnostics_of(START + FIRE + "  expect receivers [database-oncall]\n")
    assert located(found) == [("IR1101", 13, 10, 19)]
    assert found[0].message == "`expect receivers` cannot be used in a scenario test"


def test_scenario_without_fire_is_rejected():
    found = diagnostics_of(START + "  expect incidents 0\n", title="quiet")
    assert located(found) == [("IR1102", 10, 6, 13)]
    assert found[0].message == "scenario test `quiet` fires no alert"
    assert found[0].labels[0].message == "`expect incidents` makes this test a scenario"


# ---------------------------------------------------------------- start and moments


def test_scenario_without_start_is_rejected():
    found = diagnostics_of(FIRE, title="no start")
    assert located(found) == [("IR1103", 10, 6, 16)]
    assert found[0].message == "scenario test `no start` has no start"
    assert found[0].help == 'add `at "2026-03-02T10:00:00Z"` as the first line of the test'


def test_start_after_expectation_is_missing():
    found = diagnostics_of(FIRE + '  expect page database-oncall\n  at "2026-03-02T10:00:00Z"\n')
    assert located(found) == [("IR1103", 10, 6, 9)]


def test_plain_test_at_is_unchecked():
    # A single-alert test's `at` is read when the test runs, which reports a moment that does not parse.
    assert diagnostics_of('  alert { alertname = "A" }\n  at "tomorrow"\n  expect receivers [database-oncall]\n') == []


@pytest.mark.parametrize("moment", ["yesterday", "2026-03-02", "2026-13-02T10:00:00Z"])
def test_invalid_start_is_rejected(moment: str):
    found = diagnostics_of(f'  at "{moment}"\n' + FIRE)
    assert located(found) == [("IR1104", 11, 6, 8 + len(moment))]
    assert found[0].message == f"`{moment}` is not an ISO 8601 date and time"


def test_invalid_event_moment_is_rejected():
    found = diagnostics_of(START + '  fire { alertname = "PostgresDown" } at "10:05"\n')
    assert located(found) == [("IR1104", 12, 42, 49)]


def test_moment_without_offset_is_utc():
    assert diagnostics_of('  at "2026-03-02T10:00:00"\n  fire { alertname = "PostgresDown" } at "2026-03-02T10:05:00Z"\n') == []


def test_start_set_twice_is_rejected():
    found = diagnostics_of(START + '  at "2026-03-02T11:00:00Z"\n' + FIRE)
    assert located(found) == [("IR0315", 12, 3, 5)]
    assert found[0].message == "`at` is set twice in test `t`"
    assert found[0].labels[0].span.line == 11


def test_until_set_twice_is_rejected():
    found = diagnostics_of(START + FIRE + "  until 1h\n  until 2h\n")
    assert located(found) == [("IR0315", 14, 3, 8)]


# ---------------------------------------------------------------- times


def test_moment_before_the_start_is_rejected():
    found = diagnostics_of(START + '  fire { alertname = "PostgresDown" } at "2026-03-02T09:55:00Z"\n')
    assert located(found) == [("IR1105", 12, 42, 64)]
    assert found[0].message == "`fire` is 5m before the start of the scenario"
    assert (found[0].labels[0].span.line, found[0].labels[0].message) == (11, "the scenario starts here")


def test_expectation_before_the_start_is_rejected():
    found = diagnostics_of(START + FIRE + '  expect page database-oncall at "2026-03-02T09:00:00+00:00"\n')
    assert located(found) == [("IR1105", 13, 34, 61)]
    assert found[0].message == "`expect page` is 1h before the start of the scenario"


def test_negative_offset_does_not_lex():
    found = diagnostics_of(START + '  fire { alertname = "PostgresDown" } at -5m\n')
    assert located(found) == [("IR0101", 12, 42, 43)]


def test_times_out_of_order_are_accepted():
    body = (
        START + '  resolve { alertname = "PostgresDown" } at 12m\n' + FIRE + '  ack { alertname = "PostgresDown" } by "a" at 7m\n'
    )
    assert diagnostics_of(body) == []


def test_event_after_until_is_rejected():
    found = diagnostics_of(START + FIRE + '  resolve { alertname = "PostgresDown" } at 1h\n  until 30m\n')
    assert located(found) == [("IR1106", 13, 45, 47)]
    assert found[0].message == "`resolve` at 1h is after the end of the scenario"
    assert found[0].label == "the scenario ends at 30m"
    assert found[0].help == "raise `until` to 1h or more, or leave it out"


def test_expectation_after_until_is_rejected():
    found = diagnostics_of(START + FIRE + "  until 10m\n  expect escalation level 1 at 15m\n")
    assert located(found) == [("IR1106", 14, 32, 35)]


def test_duration_without_unit_is_rejected():
    found = diagnostics_of(START + '  fire { alertname = "PostgresDown" } at 30\n')
    assert located(found) == [("IR0106", 12, 42, 44)]
    assert found[0].message == "missing unit in duration `30`"


# ---------------------------------------------------------------- picked alerts and names


def test_ack_of_labels_no_fire_has_is_rejected():
    found = diagnostics_of(START + FIRE + '  ack { alertname = "MysqlDown" } by "alice" at 5m\n')
    assert located(found) == [("IR1107", 13, 7, 34)]
    assert found[0].message == "`ack` picks no alert that the scenario fires"


def test_resolve_needs_all_its_labels_on_one_alert():
    body = START + FIRE + '  resolve { alertname = "PostgresDown", service = "cache" } at 5m\n'
    assert located(diagnostics_of(body)) == [("IR1107", 13, 11, 60)]


def test_unknown_receiver_is_suggested():
    found = diagnostics_of(START + FIRE + "  expect page database-oncal at 30s\n")
    assert located(found) == [("IR0203", 13, 15, 29)]
    assert found[0].help == "a receiver with a similar name exists: `database-oncall`"


def test_unknown_escalation_target_is_rejected():
    found = diagnostics_of(START + FIRE + "  expect escalation level 1 to managment\n")
    assert located(found) == [("IR0203", 13, 32, 41)]
    assert found[0].message == "unknown receiver `managment` in test"


def test_unknown_runbook_is_rejected():
    found = diagnostics_of(START + FIRE + "  expect no runbook restart-postgre\n")
    assert located(found) == [("IR0203", 13, 21, 36)]
    assert found[0].help == "a runbook with a similar name exists: `restart-postgres`"


def test_unknown_step_names_its_runbook():
    found = diagnostics_of(START + FIRE + "  expect runbook restart-postgres path [chek, restart]\n")
    assert located(found) == [("IR0203", 13, 41, 45)]
    assert found[0].message == "unknown step `chek` in runbook `restart-postgres`"
    assert found[0].help == "a step with a similar name exists: `check`"


def test_unknown_page_event_is_rejected():
    found = diagnostics_of(START + FIRE + "  expect no page management opend\n")
    assert located(found) == [("IR1108", 13, 29, 34)]
    assert found[0].message == "unknown notification event `opend`"
    assert found[0].help == "an event with a similar name exists: `opened`"


def test_expected_page_marks_receiver_used():
    result = check_text(POLICY + 'test "t" {\n' + START + FIRE + "  expect no page management\n}\n", "policy.irules")
    assert [item.code for item in result.diagnostics] == []


# ---------------------------------------------------------------- rendering and codes


def test_diagnostic_renders_with_location_and_caret():
    result = check_text(
        POLICY + 'test "t" {\n' + START + FIRE + "  until 10m\n  expect page database-oncall at 15m\n}\n", "policy.irules"
    )
    errors = [item for item in result.diagnostics if item.severity == "error"]
    assert render_text(errors, result.project.sources) == (
        "policy.irules:14:34: error[IR1106]: `expect page` at 15m is after the end of the scenario\n"
        "   |\n"
        "14 |   expect page database-oncall at 15m\n"
        "   |                                  ^^^ the scenario ends at 10m\n"
        "   = note: policy.irules:13:9: the end is set here\n"
        "   |\n"
        "13 |   until 10m\n"
        "   |         ^^^\n"
        "   = help: raise `until` to 15m or more, or leave it out\n"
        "\n"
        "1 error, 0 warnings\n"
    )


@pytest.mark.parametrize("code", [f"IR110{number}" for number in range(1, 9)])
def test_scenario_codes_have_explanations(code: str):
    assert code in all_codes()
    assert explain(code).startswith(f"{code}: ")
