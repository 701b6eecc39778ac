"""The step graph of a runbook, as the executor walks it.

Nodes are step names, each with its `ir.Step` in the `step` attribute. An
edge `a -> b` means that `b` depends on `a`. The compensation relation comes
from `on_failure` and is kept beside the graph rather than as edges. A
compensation step does not wait for the step it compensates to succeed: it
starts when that step fails.

The failure path is every step with `compensation` set, and every step whose
dependencies are all on the failure path. Such steps run only after a
failure, and they are the only ones that may start once a step has failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx

from compiler import ir


@dataclass(frozen=True, slots=True)
class StepGraph:
    """A runbook's dependency graph, its failure path and its compensation relation."""

    runbook_id: str
    graph: nx.DiGraph
    order: tuple[str, ...]
    failure_path: frozenset[str]
    compensated_by: dict[str, str]
    compensates: dict[str, tuple[str, ...]]

    def step(self, name: str) -> ir.Step:
        return self.graph.nodes[name]["step"]

    def predecessors(self, name: str) -> Iterable[str]:
        """Return the steps that `name` depends on."""
        return self.graph.predecessors(name)

    def successors(self, name: str) -> Iterable[str]:
        """Return the steps that depend on `name`."""
        return self.graph.successors(name)


def build_step_graph(runbook: ir.Runbook) -> StepGraph:
    """Build the step graph of `runbook`.

    `order` lists the steps in a topological order that keeps the written
    order wherever the dependencies allow.

    Raises:
        ValueError: a step depends on or names for `on_failure` a step the
            runbook lacks, or the dependencies form a cycle. The compiler
            rejects all three, so this means the IR did not come from it.
    """
    graph = nx.DiGraph()
    for step in runbook.steps:
        graph.add_node(step.name, step=step)
    for step in runbook.steps:
        for before in step.depends_on:
            _require_step(graph, runbook.id, before, f"step `{step.name}` depends on")
            graph.add_edge(before, step.name)

    written = {step.name: index for index, step in enumerate(runbook.steps)}
    try:
        order = tuple(nx.lexicographical_topological_sort(graph, key=written.__getitem__))
    except nx.NetworkXUnfeasible:
        cycle = " -> ".join(edge[0] for edge in nx.find_cycle(graph))
        raise ValueError(f"runbook `{runbook.id}`: the step dependencies form a cycle through {cycle}") from None

    compensated_by: dict[str, str] = {}
    compensates: dict[str, list[str]] = {}
    for step in runbook.steps:
        if step.on_failure is not None:
            _require_step(graph, runbook.id, step.on_failure, f"step `{step.name}` names for on_failure")
            compensated_by[step.name] = step.on_failure
            compensates.setdefault(step.on_failure, []).append(step.name)

    return StepGraph(
        runbook_id=runbook.id,
        graph=graph,
        order=order,
        failure_path=failure_path_steps(graph, order),
        compensated_by=compensated_by,
        compensates={name: tuple(failed) for name, failed in compensates.items()},
    )


def failure_path_steps(graph: nx.DiGraph, order: Iterable[str]) -> frozenset[str]:
    """Return the compensation steps and the steps whose dependencies are all failure-path steps.

    `order` is a topological order of `graph`, so each step's dependencies
    are decided before the step.
    """
    failure_path: set[str] = set()
    for name in order:
        before = list(graph.predecessors(name))
        if graph.nodes[name]["step"].compensation or (before and all(dependency in failure_path for dependency in before)):
            failure_path.add(name)
    return frozenset(failure_path)


def _require_step(graph: nx.DiGraph, runbook_id: str, name: str, where: str) -> None:
    if name not in graph:
        raise ValueError(f"runbook `{runbook_id}`: {where} `{name}`, which is not a step of the runbook")
