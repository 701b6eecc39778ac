"""The step graph of a runbook: dependency edges, order, failure path and compensation relation."""

from __future__ import annotations

from typing import Any

import pytest

from compiler import ir
from runtime.runbooks.graph import build_step_graph


def step(name: str, *after: str, **fields: Any) -> ir.Step:
    return ir.Step(name=name, kind="run", args=[["true"]], depends_on=list(after), **fields)


def runbook(*steps: ir.Step) -> ir.Runbook:
    return ir.Runbook(id="rb-graph", steps=list(steps))


def test_edges_follow_depends_on():
    graph = build_step_graph(runbook(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")))

    assert sorted(graph.graph.edges) == [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    assert sorted(graph.predecessors("d")) == ["b", "c"]
    assert sorted(graph.successors("a")) == ["b", "c"]
    assert graph.step("c").depends_on == ["a"]


def test_order_keeps_written_order():
    graph = build_step_graph(runbook(step("late", "first"), step("first"), step("early", "first"), step("last", "late", "early")))

    assert graph.order == ("first", "late", "early", "last")


def test_failure_path_of_rb003_shape():
    graph = build_step_graph(
        runbook(
            step("collect_logs"),
            step("check_api_health"),
            step("validate_config", on_failure="restart_exporter"),
            step("restart_exporter", compensation=True),
        )
    )

    assert graph.failure_path == frozenset({"restart_exporter"})
    assert graph.compensated_by == {"validate_config": "restart_exporter"}
    assert graph.compensates == {"restart_exporter": ("validate_config",)}


def test_steps_after_compensation_are_failure_path():
    graph = build_step_graph(
        runbook(
            step("open_breaker", on_failure="close_breaker"),
            step("move_traffic", "open_breaker", on_failure="close_breaker"),
            step("close_breaker", compensation=True),
            step("tell_owners", "close_breaker"),
            step("page_lead", "tell_owners"),
            step("mixed", "move_traffic", "close_breaker"),
        )
    )

    assert graph.failure_path == frozenset({"close_breaker", "tell_owners", "page_lead"})
    assert graph.compensates == {"close_breaker": ("open_breaker", "move_traffic")}


def test_unknown_dependency_is_rejected():
    with pytest.raises(ValueError, match=r"runbook `rb-graph`: step `b` depends on `gone`, which is not a step of the runbook"):
        build_step_graph(runbook(step("a"), step("b", "gone")))


def test_unknown_compensation_is_rejected():
    with pytest.raises(ValueError, match=r"step `a` names for on_failure `undo`, which is not a step of the runbook"):
        build_step_graph(runbook(step("a", on_failure="undo")))


def test_cycle_is_rejected():
    with pytest.raises(ValueError, match=r"the step dependencies form a cycle through (a -> b|b -> a)"):
        build_step_graph(runbook(step("a", "b"), step("b", "a")))
