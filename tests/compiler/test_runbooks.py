"""Runbook step graphs, and the checks of runbooks, steps, action calls and action parameters."""

from __future__ import annotations

import networkx as nx

from compiler import ast
from compiler.api import check_path, check_text
from compiler.codes import all_codes
from compiler.diagnostics import Diagnostic, Severity
from compiler.parse import parse_text
from compiler.stepgraph import StepGraph, build_step_graph, to_dot

PRELUDE = 'team ops { slack "#ops" }\n'
# NOTE: every parameter below has a `matching` pattern because the parser
# cannot yet read a parameter without one.
ACTIONS = """\
action scale(replicas: int matching "[0-9]{1,3}", target: string matching "[a-z-]+", grace: duration = 30s matching ".*") {
  run ["kubectl", "scale", "--replicas={{ replicas }}", "{{ target }}"]
  idempotent
}
action restart(target: string matching "[a-z-]+") {
  run ["kubectl", "rollout", "restart", "{{ target }}"]
  mutating
}
action inspect(target: string matching ".+") {
  query prometheus "up{job=\\"{{ target }}\\"}"
}
"""


def graph_of(runbook_source: str, actions_source: str = "") -> StepGraph:
    module = parse_text(actions_source + runbook_source, "g.irules")
    actions = {decl.name.value: decl for decl in module.decls if isinstance(decl, ast.Action)}
    runbook = next(decl for decl in module.decls if isinstance(decl, ast.Runbook))
    return build_step_graph(runbook, actions)


def dependency_edges(graph: StepGraph) -> set[tuple[str, str]]:
    return set(graph.dependencies.edges)


def runbook_diagnostics(source: str, *, with_actions: bool = False) -> list[Diagnostic]:
    """Check `source` and return the diagnostics of the runbook checks (IR05xx).

    The team and the actions go after `source`, so line numbers count from its first line.
    """
    result = check_text(source + PRELUDE + (ACTIONS if with_actions else ""), "rb.irules")
    return [item for item in result.diagnostics if item.code.startswith("IR05")]


def located(diagnostics: list[Diagnostic]) -> list[tuple[str, int, int]]:
    return [(item.code, item.span.line, item.span.column) for item in diagnostics]


# ---------------------------------------------------------------- step graph


def test_steps_without_after_run_in_written_order():
    graph = graph_of("runbook r { step a { wait 1s } step b { wait 1s } step c { wait 1s } }")
    assert dependency_edges(graph) == {("a", "b"), ("b", "c")}
    assert graph.order == ["a", "b", "c"]


def test_parallel_steps_share_predecessor_and_successor():
    graph = graph_of("runbook r { step a { wait 1s } parallel { step b { wait 1s } step c { wait 1s } } step d { wait 1s } }")
    assert dependency_edges(graph) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}


def test_parallel_group_first_has_no_predecessor():
    graph = graph_of("runbook r { parallel { step a { wait 1s } step b { wait 1s } } step c { wait 1s } }")
    assert dependency_edges(graph) == {("a", "c"), ("b", "c")}


def test_after_replaces_default_dependency():
    graph = graph_of("runbook r { step a { wait 1s } step b { wait 1s } step c after a { wait 1s } step d { wait 1s } }")
    assert dependency_edges(graph) == {("a", "b"), ("a", "c"), ("c", "d")}
    assert graph.graph.edges["a", "c"]["explicit"] is True
    assert graph.graph.edges["a", "b"]["explicit"] is False


def test_after_inside_parallel_group_replaces_group_default():
    graph = graph_of(
        "runbook r { step a { wait 1s } step b { wait 1s } parallel { step c after a { wait 1s } step d { wait 1s } } }"
    )
    assert dependency_edges(graph) == {("a", "b"), ("a", "c"), ("b", "d")}


def test_compensation_step_is_left_out_of_default_order():
    graph = graph_of("runbook r { step a { wait 1s on_failure undo } step undo { wait 1s } step b { wait 1s } }")
    assert dependency_edges(graph) == {("a", "b")}
    assert graph.graph.edges["a", "undo"]["compensation"] is True
    assert graph.graph.nodes["undo"]["compensation"] is True
    assert graph.graph.nodes["b"]["compensation"] is False


def test_step_after_compensation_joins_failure_path():
    graph = graph_of(
        "runbook r { step a { wait 1s on_failure undo } step undo { wait 1s } step tell after undo { wait 1s } step b { wait 1s } }"
    )
    assert graph.failure_path() == ["undo", "tell"]
    assert graph.compensation_steps() == ["undo"]
    assert dependency_edges(graph) == {("undo", "tell"), ("a", "b")}


def test_compensation_edge_is_not_a_dependency():
    graph = graph_of("runbook r { step a { wait 1s on_failure undo } step undo { wait 1s } }")
    assert ("a", "undo") in graph.graph.edges
    assert ("a", "undo") not in graph.dependencies.edges
    assert graph.ancestors("undo") == {"a"}


def test_builder_skips_unknown_and_self_references():
    graph = graph_of("runbook r { step a after a, ghost { wait 1s on_failure a } }")
    assert list(graph.graph.edges) == []


def test_repeated_step_name_keeps_first_step():
    graph = graph_of("runbook r { step a { wait 1s } step a { notify ops } step b { wait 2s } }")
    assert graph.graph.nodes["a"]["kind"] == "wait"
    assert dependency_edges(graph) == {("a", "b")}


def test_node_attributes_come_from_step_properties():
    graph = graph_of(
        'runbook r { step a { run ["x"] timeout 30s retry 2 backoff 5s risk high idempotent approval from ops timeout 1h } }'
    )
    node = graph.graph.nodes["a"]
    assert node["kind"] == "run"
    assert node["timeout"] == 30
    assert node["retry"] == 2
    assert node["backoff"] == 5
    assert node["risk"] == "high"
    assert node["idempotent"] is True
    assert node["read_only"] is False
    assert node["mutating"] is True
    assert node["approval"] == "ops"
    assert node["approval_timeout"] == 3600


def test_read_only_kinds_are_read_only_unless_mutating():
    graph = graph_of('runbook r { step a { query prometheus "up" } step b { query prometheus "up" mutating } }')
    assert graph.graph.nodes["a"]["read_only"] is True
    assert graph.graph.nodes["b"]["read_only"] is False


def test_action_call_inherits_flags_of_action():
    graph = graph_of('runbook r { step a { scale 3 "api" } step b { inspect "api" } step c { restart "api" } }', ACTIONS)
    assert graph.graph.nodes["a"]["kind"] == "action"
    assert graph.graph.nodes["a"]["action"] == "scale"
    assert graph.graph.nodes["a"]["idempotent"] is True
    assert graph.graph.nodes["b"]["read_only"] is True
    assert graph.graph.nodes["c"]["read_only"] is False


def test_when_condition_is_kept_on_node():
    graph = graph_of("runbook r { step a { wait 1s when steps.b.ok } step b { wait 1s } }")
    assert isinstance(graph.graph.nodes["a"]["when"], ast.Path)
    assert graph.graph.nodes["b"]["when"] is None


def test_dot_output_is_sorted_and_exact():
    graph = graph_of(
        'runbook rb-1 { step b { run ["x"] on_failure undo risk high } step undo { notify ops } '
        "step a { wait 1s when steps.b.ok } }"
    )
    assert to_dot(graph) == (
        'digraph "rb-1" {\n'
        "  rankdir=TB;\n"
        "  node [shape=box];\n"
        '  "a" [label="a\\nwait", peripheries=2];\n'
        '  "b" [label="b\\nrun\\nrisk high"];\n'
        '  "undo" [label="undo\\nnotify", style=dashed];\n'
        '  "b" -> "a";\n'
        '  "b" -> "undo" [label="on_failure", style=dashed, color=red];\n'
        "}\n"
    )


def test_dot_output_is_stable_across_builds():
    source = "runbook r { parallel { step z { wait 1s } step y { wait 1s } step x { wait 1s } } step w { wait 1s } }"
    first = to_dot(graph_of(source))
    second = to_dot(graph_of(source))
    assert first == second
    assert first.index('"w"') < first.index('"x"') < first.index('"y"') < first.index('"z"')


def test_graph_of_written_order_is_acyclic():
    graph = graph_of("runbook r { step a { wait 1s } parallel { step b { wait 1s } step c { wait 1s } } step d { wait 1s } }")
    assert nx.is_directed_acyclic_graph(graph.dependencies)
    order = list(nx.topological_sort(graph.dependencies))
    assert order[0] == "a"
    assert order[-1] == "d"


# ---------------------------------------------------------------- step names and references


def test_duplicate_step_name_points_at_both():
    found = runbook_diagnostics("runbook r {\n  step a { wait 1s }\n  parallel { step a { wait 2s } }\n}\n")
    assert located(found) == [("IR0501", 3, 19)]
    assert found[0].labels[0].span.line == 2
    assert found[0].message == "step `a` is declared twice in runbook `r`"


def test_unknown_after_suggests_close_name():
    found = runbook_diagnostics("runbook r {\n  step check { wait 1s }\n  step fix after chek { wait 1s }\n}\n")
    assert located(found) == [("IR0502", 3, 18)]
    assert found[0].help == "a step with a similar name exists: `check`"


def test_unknown_on_failure_is_reported():
    found = runbook_diagnostics("runbook r {\n  step fix { wait 1s on_failure undo }\n}\n")
    assert located(found) == [("IR0502", 2, 33)]
    assert found[0].message == "unknown step `undo` in `on_failure` of step `fix`"


def test_step_after_itself_is_rejected():
    found = runbook_diagnostics("runbook r {\n  step a after a { wait 1s }\n}\n")
    assert located(found) == [("IR0503", 2, 16)]
    assert found[0].message == "step `a` depends on itself"


def test_step_compensating_itself_is_rejected():
    found = runbook_diagnostics("runbook r {\n  step a { wait 1s on_failure a }\n}\n")
    assert located(found) == [("IR0503", 2, 31)]


# ---------------------------------------------------------------- cycles and unreachable steps


def test_cycle_is_printed_as_path_at_closing_after():
    source = "runbook r {\n  step a after c { wait 1s }\n  step b after a { wait 1s }\n  step c after b { wait 1s }\n}\n"
    found = runbook_diagnostics(source)
    assert located(found) == [("IR0504", 2, 16)]
    assert found[0].message == "steps of runbook `r` wait for each other in a cycle: `a -> b -> c -> a`"


def test_cycle_through_default_order_is_found():
    found = runbook_diagnostics("runbook r {\n  step a after b { wait 1s }\n  step b { wait 1s }\n}\n")
    assert located(found) == [("IR0504", 2, 16)]
    assert "`a -> b -> a`" in found[0].message


def test_two_separate_cycles_are_both_reported():
    source = (
        "runbook r {\n  step a after b { wait 1s }\n  step b after a { wait 1s }\n"
        "  step c after d { wait 1s }\n  step d after c { wait 1s }\n}\n"
    )
    found = runbook_diagnostics(source)
    assert located(found) == [("IR0504", 2, 16), ("IR0504", 4, 16)]


def test_step_with_false_condition_is_unreachable():
    found = runbook_diagnostics("runbook r {\n  step a { wait 1s when false }\n}\n")
    assert located(found) == [("IR0505", 2, 25)]


def test_step_with_true_condition_is_reachable():
    assert runbook_diagnostics("runbook r {\n  step a { wait 1s when true }\n}\n") == []


def test_normal_step_waiting_for_compensation_is_unreachable():
    source = (
        "runbook r {\n  step fix { wait 1s on_failure undo }\n  step undo { wait 1s }\n"
        "  step verify after undo, fix { wait 1s }\n}\n"
    )
    found = runbook_diagnostics(source)
    assert located(found) == [("IR0505", 4, 21)]
    assert found[0].message == "step `verify` can never run because it waits for `undo`, which runs only after a failure"


def test_steps_after_compensation_form_a_failure_path():
    source = (
        "runbook r {\n  step fix { wait 1s on_failure undo }\n  step undo { wait 1s }\n"
        "  step tell after undo { notify ops }\n  step verify { wait 1s }\n}\n"
    )
    assert runbook_diagnostics(source) == []


# ---------------------------------------------------------------- reading step outputs


def test_condition_reading_later_step_is_rejected():
    source = "runbook r {\n  step a { wait 1s when steps.b.ok }\n  step b { wait 1s }\n}\n"
    found = runbook_diagnostics(source)
    assert located(found) == [("IR0506", 2, 31)]
    assert found[0].message == "step `a` reads the output of step `b`, which may not have run before it"
    assert found[0].help == "make step `a` wait for it: `after b`"


def test_condition_reading_parallel_sibling_is_rejected():
    source = "runbook r {\n  parallel {\n    step a { wait 1s }\n    step b { wait 1s when step.a.ok }\n  }\n}\n"
    found = runbook_diagnostics(source)
    assert located(found) == [("IR0506", 4, 32)]


def test_template_reading_unrelated_step_points_into_string():
    source = (
        "runbook r {\n  step a { wait 1s }\n  step b after a { wait 1s }\n"
        '  step c after a { run ["echo", "{{ steps.b.output }}"] }\n}\n'
    )
    found = runbook_diagnostics(source)
    assert located(found) == [("IR0506", 4, 43)]
    assert found[0].span.end_column == 44
    assert found[0].help == "make step `c` wait for it: `after a, b`"


def test_template_reading_earlier_step_is_accepted():
    source = 'runbook r {\n  step a { wait 1s }\n  step b { run ["echo", "{{ steps.a.output }}"] }\n}\n'
    assert runbook_diagnostics(source) == []


def test_compensation_may_read_failed_step():
    source = (
        "runbook r {\n  step fix { wait 1s on_failure undo }\n"
        '  step undo { run ["echo", "{{ steps.fix.output }}"] when not steps.fix.ok }\n}\n'
    )
    assert runbook_diagnostics(source) == []


def test_step_reading_its_own_output_is_rejected():
    found = runbook_diagnostics("runbook r {\n  step a { wait 1s when steps.a.ok }\n}\n")
    assert located(found) == [("IR0506", 2, 31)]
    assert found[0].message == "step `a` reads its own output"


def test_reading_unknown_step_suggests_close_name():
    found = runbook_diagnostics("runbook r {\n  step check { wait 1s }\n  step b { wait 1s when steps.chek.ok }\n}\n")
    assert located(found) == [("IR0502", 3, 31)]
    assert found[0].help == "a step with a similar name exists: `check`"


def test_reading_conditional_ancestor_is_a_warning():
    source = 'runbook r {\n  step a { wait 1s when label.env == "prod" }\n  step b { wait 1s when steps.a.ok }\n}\n'
    found = runbook_diagnostics(source)
    assert located(found) == [("IR0507", 3, 31)]
    assert found[0].severity is Severity.WARNING


def test_set_target_is_not_a_read():
    source = "runbook r {\n  step a { set incident.status = mitigating }\n  step b { wait 1s }\n}\n"
    assert runbook_diagnostics(source) == []


# ---------------------------------------------------------------- operations, retries and durations


def test_step_without_operation_is_rejected():
    found = runbook_diagnostics("runbook r {\n  step a { timeout 1m }\n}\n")
    assert located(found) == [("IR0508", 2, 8)]
    assert found[0].message == "step `a` performs no operation"


def test_step_with_two_operations_points_at_second():
    found = runbook_diagnostics("runbook r {\n  step a { wait 1s notify ops }\n}\n")
    assert located(found) == [("IR0508", 2, 20)]
    assert found[0].labels[0].span.column == 12


def test_step_with_primitive_and_call_is_rejected():
    found = runbook_diagnostics('runbook r {\n  step a { wait 1s restart "api" }\n}\n', with_actions=True)
    assert located(found) == [("IR0508", 2, 20)]


def test_more_than_ten_retries_are_rejected():
    found = runbook_diagnostics("runbook r {\n  step a { wait 1s retry 11 }\n}\n")
    assert located(found) == [("IR0509", 2, 26)]


def test_ten_retries_are_accepted():
    assert runbook_diagnostics("runbook r {\n  step a { wait 1s retry 10 }\n}\n") == []


def test_retry_of_mutating_run_is_rejected():
    found = runbook_diagnostics('runbook r {\n  step a { run ["x"] retry 2 }\n}\n')
    assert located(found) == [("IR0510", 2, 22)]


def test_retry_of_idempotent_run_is_accepted():
    assert runbook_diagnostics('runbook r {\n  step a { run ["x"] idempotent retry 2 }\n}\n') == []


def test_retry_of_read_only_run_is_accepted():
    assert runbook_diagnostics('runbook r {\n  step a { run ["x"] read_only retry 2 }\n}\n') == []


def test_retry_of_query_marked_mutating_is_rejected():
    found = runbook_diagnostics('runbook r {\n  step a { query prometheus "up" mutating retry 2 }\n}\n')
    assert located(found) == [("IR0510", 2, 43)]


def test_retry_of_idempotent_action_call_is_accepted():
    assert runbook_diagnostics('runbook r {\n  step a { scale 3 "api" retry 2 }\n}\n', with_actions=True) == []


def test_retry_of_mutating_action_call_is_rejected():
    found = runbook_diagnostics('runbook r {\n  step a { restart "api" retry 2 }\n}\n', with_actions=True)
    assert located(found) == [("IR0510", 2, 26)]


def test_step_timeout_longer_than_runbook_is_a_warning():
    found = runbook_diagnostics("runbook r {\n  timeout 5m\n  step a { wait 1s timeout 10m }\n}\n")
    assert located(found) == [("IR0511", 3, 28)]
    assert found[0].severity is Severity.WARNING
    assert found[0].labels[0].span.line == 2


def test_step_timeout_equal_to_runbook_is_accepted():
    assert runbook_diagnostics("runbook r {\n  timeout 5m\n  step a { wait 1s timeout 5m }\n}\n") == []


def test_zero_backoff_wait_and_window_are_rejected():
    source = (
        'runbook r {\n  rate_limit 1 per 0m\n  step a { wait 0s }\n  step b { run ["x"] idempotent retry 2 backoff 0ms }\n}\n'
    )
    found = runbook_diagnostics(source)
    assert located(found) == [("IR0512", 2, 20), ("IR0512", 3, 17), ("IR0512", 4, 49)]
    assert found[1].message == "`wait` must be longer than zero"


def test_zero_timeout_is_left_to_value_checks():
    result = check_text("runbook r {\n  step a { wait 1s timeout 0s }\n}\n", "rb.irules")
    assert [item.code for item in result.diagnostics if item.span is not None] == ["IR0307"]


# ---------------------------------------------------------------- action calls


def test_call_with_correct_arguments_is_accepted():
    source = 'runbook r {\n  step a { scale 3 target="api" grace=10s }\n}\n'
    assert runbook_diagnostics(source, with_actions=True) == []


def test_extra_call_argument_is_rejected():
    found = runbook_diagnostics('runbook r {\n  step a { restart "api" "web" "db" }\n}\n', with_actions=True)
    assert located(found) == [("IR0513", 2, 26)]
    assert found[0].message == "too many arguments in call of action `restart`"


def test_call_missing_required_arguments_lists_them():
    found = runbook_diagnostics("runbook r {\n  step a { scale }\n}\n", with_actions=True)
    assert located(found) == [("IR0513", 2, 12)]
    assert found[0].message == "call of action `scale` is missing the arguments `replicas` and `target`"


def test_parameter_with_default_may_be_left_out():
    assert runbook_diagnostics('runbook r {\n  step a { scale 3 "api" }\n}\n', with_actions=True) == []


def test_unknown_named_argument_suggests_parameter():
    found = runbook_diagnostics('runbook r {\n  step a { scale 3 "api" grase=5s }\n}\n', with_actions=True)
    assert located(found) == [("IR0514", 2, 26)]
    assert found[0].help == "a parameter with a similar name exists: `grace`"


def test_argument_given_twice_is_rejected():
    found = runbook_diagnostics('runbook r {\n  step a { scale 3 "api" replicas=4 }\n}\n', with_actions=True)
    assert located(found) == [("IR0515", 2, 26)]


def test_literal_of_wrong_type_is_rejected():
    found = runbook_diagnostics('runbook r {\n  step a { scale "three" "api" }\n}\n', with_actions=True)
    assert located(found) == [("IR0516", 2, 18)]
    assert found[0].message == "argument `replicas` of action `scale` must be an int, not a string"


def test_bare_word_for_string_parameter_is_accepted():
    assert runbook_diagnostics("runbook r {\n  step a { restart api }\n}\n", with_actions=True) == []


def test_bare_word_for_duration_parameter_is_rejected():
    found = runbook_diagnostics('runbook r {\n  step a { scale 3 "api" soon }\n}\n', with_actions=True)
    assert located(found) == [("IR0516", 2, 26)]
    assert found[0].message == "argument `grace` of action `scale` must be a duration, not the bare word `soon`"


def test_template_argument_is_left_to_run_time():
    source = 'runbook r {\n  step a { scale "{{ label.replicas }}" "{{ label.deployment }}" }\n}\n'
    assert runbook_diagnostics(source, with_actions=True) == []


def test_literal_not_matching_pattern_is_rejected():
    found = runbook_diagnostics('runbook r {\n  step a { scale 3 "API_Server" }\n}\n', with_actions=True)
    assert located(found) == [("IR0517", 2, 20)]
    assert found[0].message == "argument `target` of action `scale` does not match the pattern `[a-z-]+`"


def test_pattern_is_anchored_at_both_ends():
    found = runbook_diagnostics("runbook r {\n  step a { scale 1234 api }\n}\n", with_actions=True)
    assert located(found) == [("IR0517", 2, 18)]


# ---------------------------------------------------------------- action parameters


def test_unknown_parameter_type_suggests_close_type():
    found = runbook_diagnostics('action a(n: strng matching ".*") { wait 1s }\n')
    assert located(found) == [("IR0518", 1, 13)]
    assert found[0].help == "a type with a similar name exists: `string`"


def test_unknown_parameter_type_without_close_type_lists_types():
    found = runbook_diagnostics('action a(n: list matching ".*") { wait 1s }\n')
    assert located(found) == [("IR0518", 1, 13)]
    assert found[0].help == "parameter types are `string`, `int`, `number`, `duration`, `percent` and `bool`"


def test_duplicate_parameter_points_at_both():
    found = runbook_diagnostics('action a(n: int matching ".*", n: string matching ".*") { wait 1s }\n')
    assert located(found) == [("IR0519", 1, 32)]
    assert found[0].labels[0].span.column == 10


def test_default_of_wrong_type_is_rejected():
    found = runbook_diagnostics('action a(n: int = "x" matching ".*") { wait 1s }\n')
    assert located(found) == [("IR0520", 1, 19)]


def test_default_not_matching_pattern_is_rejected():
    found = runbook_diagnostics('action a(n: int = 100 matching "[0-9]") { wait 1s }\n')
    assert located(found) == [("IR0520", 1, 19)]


def test_number_parameter_accepts_int_default():
    assert runbook_diagnostics('action a(n: number = 1 matching ".*") { wait 1s }\n') == []


def test_invalid_pattern_is_rejected():
    found = runbook_diagnostics('action a(n: string matching "(?<=x)y") { wait 1s }\n')
    assert located(found) == [("IR0521", 1, 29)]
    assert found[0].message.startswith("invalid regular expression in `matching`: ")


# ---------------------------------------------------------------- runbook properties


def test_auto_and_manual_together_are_rejected():
    found = runbook_diagnostics("runbook r {\n  auto\n  manual\n  step a { wait 1s }\n}\n")
    assert located(found) == [("IR0522", 3, 3)]
    assert found[0].labels[0].span.line == 2


def test_rate_limit_zero_is_rejected():
    found = runbook_diagnostics("runbook r {\n  rate_limit 0 per 1h\n  step a { wait 1s }\n}\n")
    assert located(found) == [("IR0523", 2, 14)]


def test_concurrency_key_with_hyphen_is_rejected():
    found = runbook_diagnostics("runbook r {\n  concurrency [incident, pod-name]\n  step a { wait 1s }\n}\n")
    assert located(found) == [("IR0524", 2, 26)]


def test_concurrency_key_close_to_keyword_is_a_warning():
    found = runbook_diagnostics("runbook r {\n  concurrency [servcie, cluster]\n  step a { wait 1s }\n}\n")
    assert located(found) == [("IR0525", 2, 16)]
    assert found[0].severity is Severity.WARNING


def test_concurrency_keywords_and_labels_are_accepted():
    source = "runbook r {\n  concurrency [incident, runbook, service, cluster]\n  step a { wait 1s }\n}\n"
    assert runbook_diagnostics(source) == []


# ---------------------------------------------------------------- codes


def test_runbook_codes_are_registered_with_explanations():
    codes = {code: entry for code, entry in all_codes().items() if code.startswith("IR05")}
    assert sorted(codes) == [f"IR05{number:02d}" for number in range(1, 27)]
    assert [code for code, entry in codes.items() if len(entry.explanation) < 40] == []


# ---------------------------------------------------------------- more edge cases


def test_compensation_reading_conditional_failed_step_is_accepted():
    source = (
        'runbook r {\n  step fix { wait 1s when label.env == "prod" on_failure undo }\n'
        "  step undo { wait 1s when not steps.fix.ok }\n}\n"
    )
    assert runbook_diagnostics(source) == []


def test_reading_failure_path_step_explains_failure_path():
    source = (
        "runbook r {\n  step fix { wait 1s on_failure undo }\n  step undo { wait 1s }\n"
        "  step verify { wait 1s when steps.undo.ok }\n}\n"
    )
    found = runbook_diagnostics(source)
    assert located(found) == [("IR0506", 4, 36)]
    assert found[0].help == "`undo` runs only after a failure; read its output in a step of the same failure path"


def test_dot_labels_after_and_on_failure_edge():
    graph = graph_of("runbook r { step a { wait 1s on_failure b } step b after a { notify ops } }")
    assert '  "a" -> "b" [label="after, on_failure", style=dashed, color=red];\n' in to_dot(graph)


def test_call_of_standard_library_action_is_checked(tmp_path):
    (tmp_path / "rb.irules").write_text(
        'team ops { slack "#ops" }\nroute { receiver ops }\nrunbook r {\n  manual\n  step a { scale deployment "api" }\n}\n',
        encoding="utf-8",
    )
    result = check_path(tmp_path)
    found = [item for item in result.diagnostics if item.code.startswith("IR05")]
    assert located(found) == [("IR0513", 5, 12)]
    assert found[0].labels[0].span.path.endswith("actions.irules")


def test_template_statement_reading_later_step_is_rejected():
    source = 'runbook r {\n  step a { run ["echo", "{% if steps.b.ok %}yes{% endif %}"] }\n  step b { wait 1s }\n}\n'
    found = runbook_diagnostics(source)
    assert located(found) == [("IR0506", 2, 38)]


def test_exit_codes_accept_a_list_of_bytes():
    source = 'action plan() {\n  run ["terraform", "plan"] exit_codes [0, 2]\n  read_only\n}\n'
    result = check_text(source, "x.irules")
    assert [item.code for item in result.diagnostics if item.code.startswith("IR05")] == []


def test_exit_code_outside_a_byte_is_rejected():
    source = 'action plan() {\n  run ["terraform", "plan"] exit_codes [0, 256]\n  read_only\n}\n'
    result = check_text(source, "x.irules")
    found = [(item.code, item.span.line, item.span.column) for item in result.diagnostics if item.code == "IR0526"]
    assert found == [("IR0526", 2, 44)]


def test_exit_codes_reach_the_ir():
    from compiler.lower import _step_from_items

    module = check_text('action plan() {\n  run ["t"] exit_codes [0, 2]\n}\n', "x.irules").project.modules[0]
    step = _step_from_items("plan", module.decls[0].items)
    assert step.options == {"exit_codes": [[0, 2]]}
