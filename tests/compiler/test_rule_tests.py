"""Rule tests: each `test` block's expectations checked against the IR, with locations and JUnit XML."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from compiler import ir
from compiler.api import check_path, check_text
from compiler.rule_tests import run_tests

REPO = Path(__file__).resolve().parents[2]
# Rules projects only, because examples/ also contains deployment files such as the systemd unit.
EXAMPLES = sorted(path for path in (REPO / "examples").iterdir() if path.is_dir() and any(path.glob("*.irules")))

# Lines 1-22: the policy. Tests start on line 24.
POLICY = """\
team ops { webhook "https://hooks.example.com/ops" }
team db { webhook "https://hooks.example.com/db" }
receiver chat { webhook "https://hooks.example.com/chat" }
service api { team ops  tier 1  match service = "api" }
time_interval nights { times ["22:00-06:00"]  location "Europe/Berlin" }
route {
  receiver chat
  group_by [alertname]
  match team = "db" -> db { mute_during [nights]  continue }
  match team = "db" -> chat { group_by [alertname, cluster] }
}
inhibit severity = "critical" silences severity = "warning" on [alertname]
severity {
  critical when label.severity == "critical"
  high when label.severity == "warning" and service.tier == 1
  else medium
}
runbook restart "Restart" {
  when label.alertname == "ApiDown"
  manual
  step go { run ["true"] }
}

"""


# The line of a test block's first line, `test "..." {`, in `POLICY + tests`.
TEST_LINE = POLICY.count("\n") + 1


def report_of(tests: str):
    result = check_text(POLICY + tests, "policy.irules")
    assert not result.has_errors, [item.message for item in result.diagnostics]
    return run_tests(result.ruleset())


def only_problems(tests: str) -> list[str]:
    [result] = report_of(tests).results
    return result.problems()


# ---------------------------------------------------------------- the examples


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda folder: folder.name)
def test_every_example_test_passes(folder: Path):
    report = run_tests(check_path(folder, "production").ruleset())
    assert report.results != []
    assert report.failed == 0, report.render_text()


def test_production_staging_tests_pass_too():
    report = run_tests(check_path(REPO / "examples" / "production", "staging").ruleset())
    assert report.failed == 0, report.render_text()


# ---------------------------------------------------------------- expectations


def test_matching_receivers_pass():
    assert only_problems('test "db" {\n  alert { team = "db" }\n  expect receivers [db, chat]\n}\n') == []


def test_receivers_in_another_order_fail():
    problems = only_problems('test "db" {\n  alert { team = "db" }\n  expect receivers [chat, db]\n}\n')
    assert problems == [f"receivers (line {TEST_LINE + 2}): expected [chat, db], got [db, chat]"]


def test_wrong_expectation_fails_at_the_test_location():
    report = report_of(
        'test "first" {\n  alert { team = "ops" }\n  expect receivers [chat]\n}\n\ntest "second" {\n  alert { team = "ops" }\n  expect receivers [ops]\n}\n'
    )
    failed = [result for result in report.results if not result.passed]
    assert [result.location for result in failed] == ["policy.irules:29"]
    assert "policy.irules:29: FAILED: second" in report.render_text()


def test_summary_counts_passes_and_failures():
    report = report_of(
        'test "a" {\n  alert { team = "ops" }\n  expect receivers [chat]\n}\ntest "b" {\n  alert { team = "ops" }\n  expect receivers [db]\n}\n'
    )
    assert report.summary() == "1 passed, 1 failed"
    assert report.render_text().endswith("1 passed, 1 failed\n")


def test_receiver_muted_at_the_moment_is_left_out():
    tests = 'test "night" {\n  alert { team = "db" }\n  at "2025-06-02T23:30:00+02:00"\n  expect receivers [chat]\n}\n'
    assert only_problems(tests) == []


def test_receiver_is_kept_outside_its_mute_interval():
    tests = 'test "day" {\n  alert { team = "db" }\n  at "2025-06-02T12:00:00+02:00"\n  expect receivers [chat]\n}\n'
    assert only_problems(tests) == [f"receivers (line {TEST_LINE + 3}): expected [chat], got [db, chat]"]


def test_unreadable_moment_is_an_error():
    report = report_of('test "when" {\n  alert { team = "db" }\n  at "tomorrow"\n  expect receivers [db]\n}\n')
    assert report.results[0].error == "`at` is not an ISO 8601 date and time: 'tomorrow'"
    assert report.failed == 1


def test_inhibited_alert_passes_expect_inhibited():
    tests = 'test "i" {\n  alert { alertname = "A", severity = "warning" }\n  also_firing { alertname = "A", severity = "critical" }\n  expect inhibited\n}\n'
    assert only_problems(tests) == []


def test_unexpected_inhibition_names_the_rule_and_source():
    tests = 'test "i" {\n  alert { alertname = "A", severity = "warning" }\n  also_firing { alertname = "A", severity = "critical" }\n  expect not inhibited\n}\n'
    assert only_problems(tests) == [
        f'inhibition (line {TEST_LINE + 3}): expected not inhibited, got inhibited by inhibit rule 1 through {{alertname="A", severity="critical"}}'
    ]


def test_missing_inhibition_says_when_nothing_else_fires():
    tests = 'test "i" {\n  alert { alertname = "A", severity = "warning" }\n  expect inhibited\n}\n'
    assert only_problems(tests) == [
        f"inhibition (line {TEST_LINE + 2}): expected inhibited, got not inhibited (the test has no `also_firing` alert)"
    ]


def test_severity_mismatch_reports_the_decided_level():
    tests = 'test "s" {\n  alert { severity = "warning", service = "api" }\n  expect severity medium\n}\n'
    assert only_problems(tests) == [f"severity (line {TEST_LINE + 2}): expected medium, got high"]


def test_fallback_severity_passes():
    assert only_problems('test "s" {\n  alert { severity = "info" }\n  expect severity medium\n}\n') == []


def test_runbooks_compare_in_any_order():
    assert only_problems('test "r" {\n  alert { alertname = "ApiDown" }\n  expect runbooks [restart]\n}\n') == []


def test_missing_runbook_is_reported():
    problems = only_problems('test "r" {\n  alert { alertname = "Other" }\n  expect runbooks [restart]\n}\n')
    assert problems == [f"runbooks (line {TEST_LINE + 2}): expected [restart], got []"]


def test_group_by_of_every_receiving_route_is_checked():
    problems = only_problems('test "g" {\n  alert { team = "db" }\n  expect group_by [alertname]\n}\n')
    assert problems == [f"group_by (line {TEST_LINE + 2}): expected [alertname], got [alertname, cluster] on route 0.1"]


def test_group_by_ignores_order():
    assert only_problems('test "g" {\n  alert { team = "ops" }\n  expect group_by [alertname]\n}\n') == []


def test_each_failed_expectation_is_listed():
    tests = (
        'test "many" {\n  alert { severity = "warning", service = "api" }\n  expect receivers [db]\n  expect severity low\n}\n'
    )
    assert only_problems(tests) == [
        f"receivers (line {TEST_LINE + 2}): expected [db], got [chat]",
        f"severity (line {TEST_LINE + 3}): expected low, got high",
    ]


def test_ruleset_without_tests_reports_zero():
    ruleset: ir.Ruleset = check_text('team ops { webhook "https://hooks.example.com/o" }\nroute { receiver ops }\n').ruleset()
    assert run_tests(ruleset).summary() == "0 passed, 0 failed"


# ---------------------------------------------------------------- JUnit XML


def junit_of(tests: str) -> ElementTree.Element:
    return ElementTree.fromstring(report_of(tests).junit_xml())


def test_junit_counts_tests_and_failures():
    root = junit_of(
        'test "a" {\n  alert { team = "ops" }\n  expect receivers [chat]\n}\n'
        'test "b" {\n  alert { team = "ops" }\n  expect receivers [db]\n}\n'
        'test "c" {\n  alert { team = "ops" }\n  at "never"\n  expect receivers [chat]\n}\n'
    )
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    assert len(suite.findall("testcase")) == 3


def test_junit_failure_carries_the_message_and_location():
    root = junit_of('test "b" {\n  alert { team = "ops" }\n  expect receivers [db]\n}\n')
    case = root.find("testsuite/testcase")
    failure = case.find("failure")
    assert (case.get("name"), case.get("file"), case.get("line")) == ("b", "policy.irules", "24")
    assert failure.get("message") == "receivers (line 26): expected [db], got [chat]"
    assert failure.text.startswith("policy.irules:24: b\n")


def test_junit_passing_case_has_no_failure():
    root = junit_of('test "a" {\n  alert { team = "ops" }\n  expect receivers [chat]\n}\n')
    assert list(root.find("testsuite/testcase")) == []
