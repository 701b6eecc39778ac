"""Expressions: static typing in each scope, and evaluation on plain (and hostile) data."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import ast, expr
from compiler.api import check_text
from compiler.diagnostics import DiagnosticSink
from compiler.parse import parse_text

PREFIX = "severity { critical when "


def parse_expr(text: str) -> ast.Expr:
    module = parse_text(f"{PREFIX}{text} }}\n", "e.irules")
    return module.decls[0].rules[0].condition


def column(text: str, fragment: str) -> int:
    """Return the 1-based column of `fragment` in the line that `parse_expr` parses."""
    return len(PREFIX) + text.index(fragment) + 1


def check(text: str, scope: expr.Scope = expr.STEP_SCOPE) -> list:
    sink = DiagnosticSink()
    expr.check_condition(parse_expr(text), scope, sink)
    return sink.items


def only(text: str, scope: expr.Scope = expr.STEP_SCOPE):
    found = check(text, scope)
    assert len(found) == 1, [(item.code, item.message) for item in found]
    return found[0]


def run(text: str, values: dict) -> bool:
    return expr.evaluate_condition(parse_expr(text), values)


# ---------------------------------------------------------------- roots and fields


@pytest.mark.parametrize(
    "text",
    [
        'label.severity == "critical"',
        'labels.severity != "critical"',
        'alertname == "HighMemory"',
        'label["app.kubernetes.io/name"] == "api"',
        'annotations.summary =~ ".*disk.*"',
        'alert.name == "X" and alert.status == "firing"',
        "incident.alert_count >= 3 and incident.age > 10m",
        "service.tier == 1",
        "steps.check.ok and steps.check.exit_code == 0",
        "step.check.ok",
        'steps.probe.pods.first == "api-1"',
        "steps.query.value > 90%",
    ],
)
def test_well_typed_conditions_are_clean(text):
    assert check(text) == []


def test_unknown_root_suggests_label():
    found = only('lable.severity == "critical"')
    assert found.code == "IR0701"
    assert (found.span.line, found.span.column) == (1, column('lable.severity == "critical"', "lable"))
    assert "`label`" in found.help


def test_unknown_alert_field_suggests_name():
    text = 'alert.nmae == "X"'
    found = only(text)
    assert found.code == "IR0701"
    assert found.span.column == column(text, "nmae")
    assert found.span.end_column == column(text, "nmae") + 4
    assert "`name`" in found.help


def test_unknown_incident_field_lists_fields():
    found = only("incident.priority == 1")
    assert found.code == "IR0701"
    assert "`alert_count`" in found.help


def test_label_has_no_fields():
    text = 'label.app.name == "x"'
    found = only(text)
    assert found.code == "IR0701"
    assert found.span.column == column(text, "name")
    assert 'label["app.name"]' in found.help


def test_steps_are_not_available_in_severity_rules():
    text = "steps.check.ok"
    found = only(text, expr.SEVERITY_SCOPE)
    assert found.code == "IR0702"
    assert (found.span.column, found.span.end_column) == (column(text, "steps"), column(text, "steps") + 5)


def test_incident_is_available_in_runbook_triggers():
    assert check('incident.severity == "high"', expr.RUNBOOK_SCOPE) == []


def test_incident_is_not_available_in_grouping_conditions():
    found = only('incident.severity == "high"', expr.GROUPING_SCOPE)
    assert found.code == "IR0702"


def test_source_scope_reads_only_body():
    text = 'status == "ok"'
    found = only(text, expr.SOURCE_SCOPE)
    assert found.code == "IR0702"
    assert found.span.column == column(text, "status")
    assert "`body.status`" in found.help


def test_body_is_not_available_outside_sources():
    found = only('body.status == "ok"', expr.RUNBOOK_SCOPE)
    assert found.code == "IR0702"


def test_step_reference_without_field_is_rejected():
    text = "steps.check"
    found = only(text)
    assert found.code == "IR0712"
    assert (found.span.column, found.span.end_column) == (column(text, "steps"), column(text, "steps") + len(text))


def test_typed_step_field_has_no_fields():
    text = "steps.check.ok.value"
    found = only(text)
    assert found.code == "IR0701"
    assert found.span.column == column(text, "value")


def test_bare_name_is_a_parameter_in_an_action():
    scope = expr.action_scope({"replicas": expr.INT})
    assert check("replicas > 3", scope) == []


def test_parameter_keeps_its_declared_type():
    text = 'replicas == "3"'
    found = only(text, expr.action_scope({"replicas": expr.INT}))
    assert found.code == "IR0703"
    assert found.span.column == column(text, '"3"')


def test_parameter_has_no_fields():
    text = 'replicas.count == "3"'
    found = only(text, expr.action_scope({"replicas": expr.STRING}))
    assert found.code == "IR0701"
    assert found.span.column == column(text, "count")


def test_action_cannot_read_steps():
    found = only("steps.check.ok", expr.action_scope({}))
    assert found.code == "IR0702"
    assert "argument" in found.help


def test_unknown_parameter_type_checks_nothing():
    assert expr.param_type("pod") is expr.ANY
    assert expr.param_type("duration") is expr.DURATION


# ---------------------------------------------------------------- comparisons


def test_number_compared_with_string_blames_the_literal():
    text = 'service.tier == "1"'
    found = only(text)
    assert found.code == "IR0703"
    assert (found.span.column, found.span.end_column) == (column(text, '"1"'), column(text, '"1"') + 3)
    assert found.labels[0].span.column == column(text, "service")
    assert "without quotes" in found.help


def test_label_compared_with_number_is_rejected():
    text = "label.replicas == 3"
    found = only(text)
    assert found.code == "IR0703"
    assert found.span.column == column(text, "3")
    assert '`"3"`' in found.help


def test_percent_compares_with_numbers():
    assert check("steps.query.value >= 90% and service.tier < 2") == []


def test_duration_compared_with_number_is_rejected():
    text = "incident.age > 600"
    found = only(text)
    assert found.code == "IR0703"
    assert found.span.column == column(text, "600")
    assert "unit" in found.help


def test_strings_have_no_order():
    text = 'label.version < "2"'
    found = only(text)
    assert found.code == "IR0704"
    assert found.span.column == column(text, "label")


def test_booleans_have_no_order():
    found = only("steps.check.ok > true")
    assert found.code == "IR0704"


def test_severity_orders_against_a_level():
    assert check('incident.severity >= "high"') == []


def test_severity_orders_against_a_label():
    assert check("incident.severity > label.severity") == []


def test_misspelt_severity_level_is_rejected():
    text = 'incident.severity >= "hihg"'
    found = only(text)
    assert found.code == "IR0709"
    assert found.span.column == column(text, '"hihg"')
    assert "`high`" in found.help


def test_unknown_incident_status_is_rejected():
    found = only('incident.status == "done"')
    assert found.code == "IR0709"
    assert "`resolved`" in found.help


def test_incident_status_has_no_order():
    found = only('incident.status > "detected"')
    assert found.code == "IR0704"


def test_list_compared_with_equals_is_rejected():
    text = 'label.env == ["prod"]'
    found = only(text)
    assert found.code == "IR0703"
    assert found.span.column == column(text, "[")
    assert "`in`" in found.help


# ---------------------------------------------------------------- patterns


def test_pattern_must_be_a_literal():
    text = "label.pod =~ label.pattern"
    found = only(text)
    assert found.code == "IR0705"
    assert found.span.column == column(text, "label.pattern")


def test_invalid_pattern_is_rejected():
    text = 'label.pod =~ "api-(.*"'
    found = only(text)
    assert found.code == "IR0706"
    assert found.span.column == column(text, '"api')
    assert "missing )" in found.message


def test_lookaround_is_not_re2():
    found = only('label.pod !~ "(?=api).*"')
    assert found.code == "IR0706"


def test_pattern_needs_a_string_on_the_left():
    text = 'service.tier =~ "1|2"'
    found = only(text)
    assert found.code == "IR0705"
    assert found.span.column == column(text, "service")


def test_pattern_checked_despite_wrong_left_side():
    codes = [item.code for item in check('service.tier =~ "("')]
    assert codes == ["IR0705", "IR0706"]


def test_regex_error_returns_the_reason():
    assert expr.regex_error("a(") == "missing )"
    assert expr.regex_error("a|b") is None


# ---------------------------------------------------------------- membership and booleans


def test_in_needs_a_list_or_a_string():
    text = "label.env in 3"
    found = only(text)
    assert found.code == "IR0707"
    assert found.span.column == column(text, "3")


def test_list_item_of_another_type_is_rejected():
    text = 'label.env in ["prod", 3]'
    found = only(text)
    assert found.code == "IR0707"
    assert found.span.column == column(text, "3]")


def test_list_items_are_checked_against_choices():
    text = 'incident.status in ["resolved", "finished"]'
    found = only(text)
    assert found.code == "IR0709"
    assert found.span.column == column(text, '"finished"')


def test_substring_test_needs_a_string_on_the_left():
    found = only('service.tier in "123"')
    assert found.code == "IR0707"


def test_and_needs_boolean_operands():
    text = 'label.team and label.env == "prod"'
    found = only(text)
    assert found.code == "IR0708"
    assert (found.span.column, found.span.end_column) == (1 + len(PREFIX), 1 + len(PREFIX) + len("label.team"))
    assert '`label.team != ""`' in found.help


def test_not_needs_a_boolean_operand():
    found = only("not service.tier")
    assert found.code == "IR0708"


def test_condition_must_be_true_or_false():
    found = only("alertname")
    assert found.code == "IR0708"
    assert "a condition in a step" in found.message


def test_one_mistake_is_reported_once():
    found = only("lable.replicas == 3")
    assert found.code == "IR0701"


# ---------------------------------------------------------------- `set` steps


def test_bare_name_in_set_is_the_choice():
    module = parse_text("runbook r { step s { set incident.status = mitigating } }\n", "s.irules")
    step_kind = module.decls[0].items[0].items[-1]
    assert expr.set_literal(*step_kind.args) == "mitigating"


def test_set_title_bare_name_is_no_choice():
    module = parse_text("runbook r { step s { set incident.title = summary } }\n", "s.irules")
    step_kind = module.decls[0].items[0].items[-1]
    assert expr.set_literal(*step_kind.args) is None


# ---------------------------------------------------------------- evaluation


def test_label_equality_holds():
    assert run('label.severity == "critical"', {"labels": {"severity": "critical"}}) is True


def test_absent_label_is_the_empty_string():
    assert run('label.team == ""', {"labels": {}}) is True
    assert run('label.team != "db"', {}) is True


def test_absent_field_compares_false():
    assert run("incident.age > 5m", {}) is False
    assert run("incident.age <= 5m", {}) is False
    assert run("incident.alert_count == 0", {"incident": {}}) is False


def test_absent_field_is_unequal():
    assert run("incident.alert_count != 0", {"incident": {}}) is True
    assert run('steps.check.output !~ "ok"', {}) is True
    assert run('steps.check.output not in ["ok"]', {}) is True


def test_percent_is_a_fraction():
    assert run("steps.q.value >= 90%", {"steps": {"q": {"value": 0.9}}}) is True
    assert run("steps.q.value > 90%", {"steps": {"q": {"value": 0.9}}}) is False


def test_durations_compare_in_seconds():
    assert run("incident.age > 5m", {"incident": {"age": 301}}) is True
    assert run("incident.age > 5m", {"incident": {"age": datetime.timedelta(minutes=4)}}) is False
    assert run("incident.age == 1h30m", {"incident": {"age": 5400}}) is True


def test_severity_levels_are_ordered():
    assert run('incident.severity >= "high"', {"incident": {"severity": "critical"}}) is True
    assert run('incident.severity >= "high"', {"incident": {"severity": "medium"}}) is False
    assert run('incident.severity < "high"', {"incident": {"severity": "low"}}) is True


def test_unknown_severity_in_data_has_no_order():
    assert run('incident.severity >= "low"', {"incident": {"severity": "urgent"}}) is False


def test_pattern_is_fully_anchored():
    assert run('label.job =~ "api.*"', {"labels": {"job": "api-gateway"}}) is True
    assert run('label.job =~ "api.*"', {"labels": {"job": "my-api"}}) is False
    assert run('label.job !~ "api"', {"labels": {"job": "api\n"}}) is True


def test_pattern_matches_numbers_as_text():
    assert run('body.code =~ "5.."', {"body": {"code": 503}}) is True


def test_membership_in_list_and_string():
    values = {"labels": {"env": "prod"}}
    assert run('label.env in ["prod", "staging"]', values) is True
    assert run('label.env not in ["prod", "staging"]', values) is False
    assert run('label.env in "preprod"', values) is True
    assert run('label.env in ["dev"]', values) is False


def test_numbers_in_text_compare_as_numbers():
    assert run("body.count > 3", {"body": {"count": "12"}}) is True
    assert run("body.ratio >= 90%", {"body": {"ratio": "95%"}}) is True
    assert run("body.count == 3", {"body": {"count": "three"}}) is False


def test_boolean_operators_short_circuit():
    values = {"labels": {"a": "1"}}
    assert run('label.a == "1" or steps.x.y.z > 1', values) is True
    assert run('not (label.a == "2") and label.a == "1"', values) is True


def test_string_true_counts_as_true():
    assert run("steps.check.ok", {"steps": {"check": {"ok": "True"}}}) is True
    assert run("steps.check.ok", {"steps": {"check": {"ok": 1}}}) is False


def test_parameters_shadow_labels():
    values = {"params": {"pod": "api-1"}, "labels": {"pod": "other"}}
    assert run('pod == "api-1"', values) is True


def test_nested_body_fields_and_list_indexes():
    values = {"body": {"items": [{"name": "a"}, {"name": "b"}]}}
    assert run('body.items["1"].name == "b"', values) is True
    assert run('body.items["7"].name == "b"', values) is False
    assert run('body.items.name == "b"', values) is False
    # Other Unicode digits are no index: "²" is a digit to str.isdigit, but int() rejects it.
    assert run('body.items["²"].name == "b"', values) is False
    assert run('body.items["١"].name == "b"', values) is False


def test_null_in_data_is_absent():
    assert run("body.count != 1", {"body": {"count": None}}) is True
    assert run("body.count == 1", {"body": {"count": None}}) is False


def test_pattern_like_label_value_is_data():
    values = {"labels": {"pod": ".*", "pattern": ".*"}}
    assert run('label.pod =~ "api"', values) is False
    assert run('label.pod == ".*"', values) is True
    # A pattern from data is rejected by the checker, and the evaluator never compiles it.
    assert run("label.other =~ label.pattern", values) is False


def test_catastrophic_pattern_runs_in_linear_time():
    values = {"labels": {"x": "a" * 200_000 + "!"}}
    assert run('label.x =~ "(a+)+"', values) is False


def test_huge_label_value_is_compared():
    huge = "x" * 5_000_000
    values = {"labels": {"x": huge, "y": huge}}
    assert run('label.x =~ "x*"', values) is True
    assert run('"xx" in label.x', values) is True
    assert run("label.x > 3", values) is False


def test_deeply_nested_data_compares_false():
    left: list = []
    right: list = []
    for _ in range(10_000):
        left, right = [left], [right]
    assert run("body.a == body.b", {"body": {"a": left, "b": right}}) is False


def test_wrong_shapes_in_data_compare_false():
    values = {"labels": ["not", "a", "mapping"], "service": "api", "steps": {"check": 3}}
    assert run('label.team == "db"', values) is False
    assert run("service.tier < 2", values) is False
    assert run("steps.check.ok", values) is False


def test_not_a_number_has_no_order():
    assert run("body.x > 1", {"body": {"x": float("nan")}}) is False


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_HOSTILE_CONDITIONS = [
    'label.a == "x" or label.b =~ "a.*" or label.c in ["1", "2"]',
    "steps.s.value > 90% and steps.s.ok and incident.age >= 5m",
    'incident.severity >= "high" or incident.alert_count != 3',
    'body.a.b == body.c or body.d in body.e or body.f =~ "[0-9]+"',
    "not (service.tier <= 1) and alertname not in body.g",
]


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    labels=st.dictionaries(st.text(max_size=5), st.text(max_size=40) | st.integers(), max_size=5),
    body=_json,
    steps=_json,
    incident=_json,
    service=_json,
)
def test_evaluation_never_raises_on_arbitrary_data(labels, body, steps, incident, service):
    values = {"labels": labels, "body": body, "steps": steps, "incident": incident, "service": service}
    for text in _HOSTILE_CONDITIONS:
        assert isinstance(expr.evaluate_condition(parse_expr(text), values), bool)


# ---------------------------------------------------------------- every expression of a project


def project_codes(source: str) -> list[tuple[str, int, int]]:
    """Return the expression diagnostics of a one-file project as (code, line, column)."""
    result = check_text(source, "p.irules")
    return [(item.code, item.span.line, item.span.column) for item in result.diagnostics if item.code.startswith("IR07")]


def test_severity_rule_is_checked_in_its_scope():
    source = 'severity {\n  critical when incident.severity == "critical"\n}\n'
    assert project_codes(source) == [("IR0702", 2, 17)]


def test_runbook_trigger_reads_the_incident():
    source = 'runbook r {\n  when incident.status == "open"\n  step s { wait 1m }\n}\n'
    assert project_codes(source) == [("IR0709", 2, 27)]


def test_step_condition_reads_steps():
    source = "runbook r {\n  step a { wait 1m }\n  step b { when steps.a.ok and steps.a  wait 1m }\n}\n"
    assert project_codes(source) == [("IR0712", 3, 32)]


def test_pagerduty_rule_condition_is_checked():
    source = 'pagerduty {\n  rule "db" {\n    when service.tier == "1"\n    priority P1\n  }\n}\n'
    assert project_codes(source) == [("IR0703", 3, 26)]


def test_grouping_condition_is_checked():
    source = "correlate by-service {\n  when steps.a.ok\n  by [service]\n}\n"
    assert project_codes(source) == [("IR0702", 2, 8)]


def test_source_reads_only_the_body():
    source = 'source hook {\n  map {\n    alert.name = label.name\n  }\n  resolved when body.state == "ok"\n}\n'
    assert project_codes(source) == [("IR0702", 3, 18)]


def test_source_mapping_target_must_be_an_alert_field():
    source = (
        "source hook {\n  map {\n    alert.nmae = body.title\n    incident.id = body.id\n    labels.team = body.team\n  }\n}\n"
    )
    assert project_codes(source) == [("IR0713", 3, 11), ("IR0713", 4, 5)]


def test_set_status_takes_a_bare_choice():
    source = "runbook r {\n  step a { set incident.status = mitigating }\n  step b { set incident.severity = hihg }\n}\n"
    assert project_codes(source) == [("IR0709", 3, 36)]


def test_set_rejects_derived_fields():
    source = "runbook r {\n  step a { set incident.age = 5m }\n}\n"
    assert project_codes(source) == [("IR0710", 2, 16)]


def test_set_value_must_fit_the_field():
    source = 'runbook r {\n  step a { set incident.title = 3 }\n  step b { set incident.title = "Disk full on {{ label.instance }}" }\n}\n'
    assert project_codes(source) == [("IR0711", 2, 33)]


def test_set_severity_from_a_label_is_allowed():
    source = "runbook r {\n  step a { set incident.severity = label.severity }\n}\n"
    assert project_codes(source) == []


def test_action_condition_is_checked_with_its_parameters():
    source = 'action drain(node: string matching ".+") {\n  when node == "" or steps.a.ok\n  run ["kubectl", "drain", "{{ node }}"]\n}\n'
    assert project_codes(source) == [("IR0702", 2, 22)]


def test_severity_compared_with_bare_level_name_is_rejected():
    source = 'runbook r "t" {\n  when incident.severity >= high\n  step a { wait 1m }\n}\n'
    result = check_text(source, "x.irules")
    found = [(item.code, item.span.line, item.span.column) for item in result.diagnostics if item.code == "IR0714"]
    assert found == [("IR0714", 2, 29)]


def test_severity_compared_with_level_string_is_accepted():
    source = 'runbook r "t" {\n  when incident.severity >= "high"\n  step a { wait 1m }\n}\n'
    result = check_text(source, "x.irules")
    assert [item.code for item in result.diagnostics if item.code.startswith("IR07")] == []
