"""Scenario tests in the language: parsing, the formatter's layout and the lowering to `ir.Scenario`."""

from __future__ import annotations

import pytest

from compiler import ast, ir
from compiler.api import check_text
from compiler.fmt import format_source
from compiler.parse import parse_text
from compiler.rule_tests import run_tests

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

OUTAGE = """\
test "database outage" {
  at "2026-03-02T10:00:00Z"
  fire { alertname = "PostgresDown", service = "database" } annotations { summary = "down" } at 0m
  ack { alertname = "PostgresDown" } by "alice" at 7m
  resolve { alertname = "PostgresDown", service = "database" } at 12m
  resolve { alertname = "PostgresDown" } by "bob" at "2026-03-02T10:20:00Z"
  expect incidents 1
  expect page database-oncall opened at 0m30s
  expect page database-oncall
  expect no page management
  expect no page database-oncall reminder
  expect escalation level 1 to management at 5m
  expect no escalation
  expect runbook restart-postgres path [check, restart] at 0m
  expect no runbook restart-postgres
}
"""


def scenario_of(tests: str) -> ir.TestCase:
    result = check_text(POLICY + tests, "policy.irules")
    assert not result.has_errors, [item.message for item in result.diagnostics]
    [case] = result.ruleset().tests
    return case


def items_of(text: str) -> list[ast.TestItem | ast.ScenarioEvent]:
    [decl] = parse_text(text, "t.irules").decls
    return decl.items


# ---------------------------------------------------------------- parsing


def test_events_parse_with_labels_person_and_time():
    items = items_of(OUTAGE)
    events = [item for item in items if isinstance(item, ast.ScenarioEvent)]
    assert [event.kind for event in events] == ["fire", "ack", "resolve", "resolve"]
    assert [pair.name.value for pair in events[0].labels] == ["alertname", "service"]
    assert [(pair.name.value, pair.value.value) for pair in events[0].annotations] == [("summary", "down")]
    assert [None if event.by is None else event.by.value for event in events] == [None, "alice", None, "bob"]
    assert events[1].at == ast.Duration(span=events[1].at.span, text="7m", seconds=420)
    assert events[3].at.value == "2026-03-02T10:20:00Z"


def test_event_spans_point_at_keyword_and_braces():
    fire = items_of(OUTAGE)[1]
    assert (fire.kind_span.line, fire.kind_span.column, fire.kind_span.end_column) == (3, 3, 7)
    assert (fire.labels_span.column, fire.labels_span.end_column) == (8, 60)
    assert (fire.annotations_span.column, fire.annotations_span.end_column) == (73, 93)


def test_expectations_keep_omitted_parts_as_none():
    lines = {}
    for item in items_of(OUTAGE):
        if isinstance(item, ast.TestItem):
            lines.setdefault(item.key, []).append([None if arg is None else type(arg).__name__ for arg in item.args])
    assert lines["expect page"] == [["Name", "Name", "Duration"], ["Name", None, None]]
    assert lines["expect no page"] == [["Name", None], ["Name", "Name"]]
    assert lines["expect escalation"] == [["Int", "Name", "Duration"]]
    assert lines["expect runbook"] == [["Name", "NameList", "Duration"]]
    assert lines["expect no escalation"] == [[]]


def test_scenario_items_mark_a_test_as_scenario():
    [plain] = parse_text('test "p" { alert { a = "b" } expect receivers [x] }', "t.irules").decls
    [scenario] = parse_text(OUTAGE, "t.irules").decls
    assert plain.scenario_items == []
    assert len(scenario.scenario_items) == 13


def test_at_after_an_expectation_belongs_to_it():
    # The grammar shifts: the `at` extends `expect page`, and the test has no start.
    items = items_of('test "t" {\n  expect page ops\n  at "2026-03-02T10:00:00Z"\n}\n')
    [page] = items
    assert page.key == "expect page"
    assert page.args[2].value == "2026-03-02T10:00:00Z"


def test_acknowledgement_needs_a_person():
    result = check_text(POLICY + 'test "t" {\n  ack { alertname = "A" } at 1m\n}\n', "policy.irules")
    [error] = result.diagnostics
    assert (error.code, error.span.line, error.span.column) == ("IR0103", 11, 27)
    assert error.message == "expected `by` after `}`, found `at`"


# ---------------------------------------------------------------- formatting


def fmt(text: str) -> str:
    return format_source(text, "f.irules")


def test_outage_formats_idempotently():
    once = fmt(OUTAGE)
    assert fmt(once) == once


def test_short_events_print_on_one_line():
    source = 'test "t" { at "2026-03-02T10:00:00Z" fire {alertname="A"} at 0m ack {alertname="A"}   by "alice" at 7m until 1h }'
    assert fmt(source) == (
        'test "t" {\n'
        '  at "2026-03-02T10:00:00Z"\n'
        '  fire { alertname = "A" } at 0m\n'
        '  ack { alertname = "A" } by "alice" at 7m\n'
        "  until 1h\n"
        "}\n"
    )


def test_expectations_print_their_keywords():
    source = 'test "t" { expect page ops opened at 30s expect escalation level 2 to ops at 1h expect runbook rb path [a,b] }'
    assert fmt(source) == (
        'test "t" {\n'
        "  expect page ops opened at 30s\n"
        "  expect escalation level 2 to ops at 1h\n"
        "  expect runbook rb path [a, b]\n"
        "}\n"
    )


def test_long_event_prints_one_label_per_line():
    labels = ", ".join(f'label{index} = "value-{index:02d}"' for index in range(6))
    source = f'test "t" {{ fire {{ {labels} }} annotations {{ summary = "s" }} at 0m }}'
    assert fmt(source) == (
        'test "t" {\n'
        "  fire {\n"
        + "".join(f'    label{index} = "value-{index:02d}"{"," if index < 5 else ""}\n' for index in range(6))
        + "  } annotations {\n"
        '    summary = "s"\n'
        "  } at 0m\n"
        "}\n"
    )


def test_comment_inside_labels_spreads_the_event():
    source = 'test "t" {\n  fire { alertname = "A", # the name\n    service = "db" } at 0m # trailing\n}\n'
    expected = 'test "t" {\n  fire {\n    alertname = "A",  # the name\n    service = "db"\n  } at 0m  # trailing\n}\n'
    assert fmt(source) == expected
    assert fmt(expected) == expected


def test_trailing_comment_moves_above_event():
    source = 'test "t" {\n  resolve { a = "1" }\n    # who\n    by "x" at 3m\n}\n'
    expected = 'test "t" {\n  # who\n  resolve { a = "1" } by "x" at 3m\n}\n'
    assert fmt(source) == expected
    assert fmt(expected) == expected


def test_empty_label_set_stays_braces():
    source = 'test "t" { fire { # none\n } annotations {} at 0m }'
    assert fmt(source) == 'test "t" {\n  # none\n  fire {} annotations {} at 0m\n}\n'


# ---------------------------------------------------------------- lowering


def test_outage_lowers_offsets_in_seconds():
    scenario = scenario_of(OUTAGE).scenario
    assert scenario.start == "2026-03-02T10:00:00Z"
    assert [(event.kind, event.at_s, event.by) for event in scenario.events] == [
        (ir.ScenarioEventKind.FIRE, 0.0, None),
        (ir.ScenarioEventKind.ACKNOWLEDGE, 420.0, "alice"),
        (ir.ScenarioEventKind.RESOLVE, 720.0, None),
        (ir.ScenarioEventKind.RESOLVE_INCIDENT, 1200.0, "bob"),
    ]
    assert scenario.events[0].annotations == {"summary": "down"}
    assert scenario.events[0].line == 12


def test_until_defaults_to_the_latest_time():
    assert scenario_of(OUTAGE).scenario.until_s == 1200.0


def test_written_until_wins():
    tests = 'test "t" {\n  at "2026-03-02T10:00:00Z"\n  fire { alertname = "A" } at 1m\n  until 2h\n}\n'
    assert scenario_of(tests).scenario.until_s == 7200.0


def test_moment_with_offset_counts_from_the_start():
    tests = 'test "t" {\n  at "2026-03-02T10:00:00Z"\n  fire { alertname = "A" } at "2026-03-02T11:30:00+01:00"\n}\n'
    assert scenario_of(tests).scenario.events[0].at_s == 1800.0


def test_expectations_lower_to_their_fields():
    expectations = scenario_of(OUTAGE).scenario.expectations
    dumped = [item.model_dump(exclude_defaults=True, mode="json") for item in expectations]
    assert dumped == [
        {"kind": "incidents", "count": 1, "line": 16},
        {"kind": "page", "receiver": "database-oncall", "event": "opened", "at_s": 30.0, "line": 17},
        {"kind": "page", "receiver": "database-oncall", "line": 18},
        {"kind": "no page", "receiver": "management", "line": 19},
        {"kind": "no page", "receiver": "database-oncall", "event": "reminder", "line": 20},
        {"kind": "escalation", "receiver": "management", "level": 1, "at_s": 300.0, "line": 21},
        {"kind": "no escalation", "line": 22},
        {"kind": "runbook", "runbook": "restart-postgres", "path": ["check", "restart"], "at_s": 0.0, "line": 23},
        {"kind": "no runbook", "runbook": "restart-postgres", "line": 24},
    ]


def test_scenario_survives_ruleset_json():
    result = check_text(POLICY + OUTAGE, "policy.irules")
    ruleset = result.ruleset()
    assert ir.Ruleset.model_validate_json(ruleset.to_json()) == ruleset


def test_single_alert_test_has_no_scenario_in_json():
    result = check_text(POLICY + 'test "p" {\n  alert { alertname = "A" }\n  expect receivers [database-oncall]\n}\n', "p.irules")
    assert '"scenario"' not in result.ruleset().to_json()


# ---------------------------------------------------------------- the compiler's runner


def test_compiler_runner_skips_scenarios():
    result = check_text(POLICY + OUTAGE, "policy.irules")
    report = run_tests(result.ruleset())
    assert report.summary() == "0 passed, 0 failed, 1 skipped"
    assert report.render_text() == "0 passed, 0 failed, 1 skipped\n"
    assert report.render_text(verbose=True).splitlines()[0] == (
        "policy.irules:10: skipped: database outage (scenario tests run on the simulation of `irules test`)"
    )


def test_skipped_scenario_in_junit():
    report = run_tests(check_text(POLICY + OUTAGE, "policy.irules").ruleset())
    xml = report.junit_xml()
    assert 'tests="1" failures="0" errors="0" skipped="1"' in xml
    assert '<skipped message="scenario tests run on the simulation of `irules test`" />' in xml


@pytest.mark.parametrize("keyword", ["fire", "resolve", "ack", "until"])
def test_scenario_keywords_stay_names_elsewhere(keyword: str):
    # Keywords are contextual: a team may still be called `fire` or `until`.
    result = check_text(
        f'team {keyword} {{ webhook "https://hooks.example.com/x" }}\nroute {{ receiver {keyword} }}\n', "k.irules"
    )
    assert result.diagnostics == []
