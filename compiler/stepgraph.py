"""The step graph of a runbook: which step runs after which, as a networkx DiGraph.

Order of steps:

- Steps run in the order written. A step without `after` depends on the step
  written before it, or on every step of the `parallel { }` group written
  before it. The first step depends on nothing.
- `after a, b` replaces that default: the step depends on exactly `a` and `b`.
- Each step of a `parallel { }` group depends on what precedes the group (or
  on its own `after` list), so the steps of a group run concurrently. The
  step written after the group depends on every step of the group.
- A step runs once every step it depends on has finished. A step whose
  `when` condition is false is skipped, and a skipped step counts as
  finished, so the steps after it still run.

Failure paths:

- `on_failure NAME` names a compensation step: it runs only when the step
  that names it fails. A step may be the compensation of several steps.
- A step whose `after` list names only steps of a failure path belongs to
  that failure path too, so `step notify_rollback after rollback { ... }`
  runs after the rollback.
- Steps of a failure path are left out of the default order: no step
  depends on them by default, and they depend on nothing by default. A
  compensation step without `after` waits only for the failure of the step
  it compensates.
- Once a step fails, only failure-path steps start. So a step outside any
  failure path that depends on a failure-path step never runs; the checker
  reports it as unreachable.

The graph has one node per step name. Its attributes are:

- `step`: the `ast.Step`.
- `kind`: the primitive, such as `run`, or `action` for an action call, or
  `None` for a step that performs nothing. `action` is the called action's
  name.
- `risk`, `read_only`, `mutating` and `idempotent`, from the step or else
  from the action it calls.
- `timeout`, `backoff` and `approval_timeout` in seconds, `retry` (the
  count) and `approval` (the team's name).
- `when` (the condition expression) and `on_failure` (the compensation
  step's name).
- `compensation` and `failure_path`, both booleans.

Absent values are `None`.

An edge `a -> b` means that `b` runs after `a`. A dependency edge has
`dependency=True`, `explicit` (written in `after`, not the default order)
and `span` (the name in `after`, or `None`). A compensation edge, from a
step to the step named by its `on_failure`, has `compensation=True` and
`on_failure_span`. One edge can be both. The builder never reports errors:
it skips unknown names, self-references and repeated step names, which
`compiler.checks.runbooks` reports. The graph may contain cycles, which the
checker also reports.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import networkx as nx

from compiler import ast

# Step kinds that change nothing outside the incident: they query, wait,
# talk to people or record incident state.
READ_ONLY_KINDS = frozenset({"query", "wait", "notify", "report", "assist", "approve", "set"})


@dataclass(slots=True)
class StepGraph:
    """A runbook's steps and the edges between them; see the module docstring for the attributes."""

    runbook: ast.Runbook
    graph: nx.DiGraph
    order: list[str]

    @property
    def dependencies(self) -> nx.DiGraph:
        """Return a read-only view with the dependency edges only."""
        return nx.subgraph_view(self.graph, filter_edge=lambda a, b: self.graph.edges[a, b].get("dependency", False))

    def step(self, name: str) -> ast.Step:
        return self.graph.nodes[name]["step"]

    def ancestors(self, name: str) -> set[str]:
        """Return the steps that have finished, or were skipped, whenever `name` starts; both kinds of edge count."""
        return nx.ancestors(self.graph, name)

    def compensation_steps(self) -> list[str]:
        return [name for name in self.order if self.graph.nodes[name]["compensation"]]

    def failure_path(self) -> list[str]:
        return [name for name in self.order if self.graph.nodes[name]["failure_path"]]


def build_step_graph(runbook: ast.Runbook, actions: Mapping[str, ast.Action] | None = None) -> StepGraph:
    """Build the step graph of `runbook`; `actions` lets action calls inherit the action's flags.

    Example:
        graph = build_step_graph(runbook, context.symbols.actions)
        for name in nx.topological_sort(graph.dependencies): ...
    """
    steps = unique_steps(runbook)
    compensations = _compensation_names(steps)
    failure_path = _failure_path_names(steps, compensations)
    graph = nx.DiGraph(name=runbook.name.value)
    for step in steps.values():
        attributes = step_attributes(step, actions or {})
        attributes["compensation"] = step.name.value in compensations
        attributes["failure_path"] = step.name.value in failure_path
        graph.add_node(step.name.value, **attributes)

    _add_dependency_edges(graph, runbook, steps, failure_path)
    _add_compensation_edges(graph, steps)
    return StepGraph(runbook=runbook, graph=graph, order=list(steps))


# ---------------------------------------------------------------- reading the AST


def written_steps(runbook: ast.Runbook) -> Iterator[ast.Step]:
    """Yield every step in source order, including the steps of parallel groups and repeated names."""
    for item in runbook.items:
        if isinstance(item, ast.Step):
            yield item
        elif isinstance(item, ast.Parallel):
            yield from item.steps


def unique_steps(runbook: ast.Runbook) -> dict[str, ast.Step]:
    """Return the steps by name in source order; of two steps with one name, the first wins."""
    steps: dict[str, ast.Step] = {}
    for step in written_steps(runbook):
        steps.setdefault(step.name.value, step)
    return steps


def step_items(step: ast.Step) -> list[ast.StepItem]:
    # The parser leaves a `None` where an optional `after` clause is absent.
    return [item for item in step.items if item is not None]


def properties(items: list[object], key: str) -> list[ast.Property]:
    return [item for item in items if isinstance(item, ast.Property) and item.key == key]


def first_of(args: list[object], kind: type) -> object | None:
    """Return the first argument of type `kind`; optional arguments leave `None`s in `args`."""
    return next((arg for arg in args if isinstance(arg, kind)), None)


def performed(step: ast.Step) -> list[ast.StepKind | ast.ActionCall]:
    """Return what the step does: its primitive kinds and action calls, in source order."""
    return [item for item in step_items(step) if isinstance(item, (ast.StepKind, ast.ActionCall))]


def step_attributes(step: ast.Step, actions: Mapping[str, ast.Action]) -> dict[str, object]:
    """Return the node attributes of one step; the step's own properties win over its action's."""
    items = step_items(step)
    things = performed(step)
    thing = things[0] if things else None
    action = actions.get(thing.action.value) if isinstance(thing, ast.ActionCall) else None
    inherited = action.items if action is not None else []

    def flag(key: str) -> bool:
        return bool(properties(items, key) or properties(inherited, key))

    read_only = _is_read_only(items, thing, inherited)
    retry = properties(items, "retry")
    approval = properties(items, "approval")
    on_failure = properties(items, "on_failure")
    kind, action_name = None, None
    if isinstance(thing, ast.ActionCall):
        kind, action_name = "action", thing.action.value
    elif thing is not None:
        kind = thing.kind
    return {
        "step": step,
        "kind": kind,
        "action": action_name,
        "risk": _risk(items) or _risk(inherited),
        "read_only": read_only,
        "mutating": not read_only,
        "idempotent": flag("idempotent"),
        "timeout": _seconds(properties(items, "timeout") or properties(inherited, "timeout")),
        "retry": retry[0].args[0].value if retry else None,
        "backoff": _seconds(retry),
        "approval": approval[0].args[0].value if approval else None,
        "approval_timeout": _seconds(approval),
        "when": properties(items, "when")[0].args[0] if properties(items, "when") else None,
        "on_failure": on_failure[0].args[0].value if on_failure else None,
    }


def _is_read_only(items: list[object], thing: object, inherited: list[object]) -> bool:
    if properties(items, "mutating"):
        return False
    if properties(items, "read_only"):
        return True
    if isinstance(thing, ast.StepKind):
        return thing.kind in READ_ONLY_KINDS
    if properties(inherited, "mutating"):
        return False
    if properties(inherited, "read_only"):
        return True
    kinds = [item.kind for item in inherited if isinstance(item, ast.StepKind)]
    return bool(kinds) and all(kind in READ_ONLY_KINDS for kind in kinds)


def _risk(items: list[object]) -> str | None:
    found = properties(items, "risk")
    return found[0].args[0].value if found else None


def _seconds(props: list[ast.Property]) -> float | None:
    if not props:
        return None
    duration = first_of(props[0].args, ast.Duration)
    return duration.seconds if duration is not None else None


# ---------------------------------------------------------------- edges


def _compensation_names(steps: dict[str, ast.Step]) -> set[str]:
    names = set()
    for step in steps.values():
        for prop in properties(step_items(step), "on_failure"):
            target = prop.args[0].value
            if target in steps and target != step.name.value:
                names.add(target)
    return names


def _failure_path_names(steps: dict[str, ast.Step], compensations: set[str]) -> set[str]:
    """Return the compensation steps and the steps whose `after` names only failure-path steps."""
    found = set(compensations)
    changed = True
    while changed:
        changed = False
        for name, step in steps.items():
            if name in found or step.after is None or not step.after.items:
                continue
            if all(item.value in found for item in step.after.items):
                found.add(name)
                changed = True
    return found


def _add_dependency_edges(graph: nx.DiGraph, runbook: ast.Runbook, steps: dict[str, ast.Step], failure_path: set[str]) -> None:
    # `previous` contains the steps that a step without `after` depends on.
    previous: list[str] = []
    for item in runbook.items:
        if isinstance(item, ast.Step):
            if _add_step_edges(graph, item, steps, failure_path, previous):
                previous = [item.name.value]
        elif isinstance(item, ast.Parallel):
            group = [step.name.value for step in item.steps if _add_step_edges(graph, step, steps, failure_path, previous)]
            previous = group or previous


def _add_step_edges(
    graph: nx.DiGraph, step: ast.Step, steps: dict[str, ast.Step], failure_path: set[str], previous: list[str]
) -> bool:
    """Add the edges into one step; return whether later steps depend on it by default."""
    name = step.name.value
    if steps.get(name) is not step:
        return False  # a repeated name: the checker reports it, the graph keeps the first
    if step.after is not None:
        for item in step.after.items:
            if item.value in steps and item.value != name:
                _add_edge(graph, item.value, name, dependency=True, explicit=True, span=item.span)
    elif name not in failure_path:
        for before in previous:
            _add_edge(graph, before, name, dependency=True, explicit=False, span=None)
    return name not in failure_path


def _add_compensation_edges(graph: nx.DiGraph, steps: dict[str, ast.Step]) -> None:
    for name, step in steps.items():
        for prop in properties(step_items(step), "on_failure"):
            target = prop.args[0]
            if target.value in steps and target.value != name:
                _add_edge(graph, name, target.value, compensation=True, on_failure_span=target.span)


def _add_edge(graph: nx.DiGraph, source: str, target: str, **attributes: object) -> None:
    if graph.has_edge(source, target):
        graph.edges[source, target].update(attributes)
    else:
        graph.add_edge(source, target, **attributes)


# ---------------------------------------------------------------- DOT


def to_dot(step_graph: StepGraph) -> str:
    """Render the graph as Graphviz DOT text; nodes and edges are sorted, so equal graphs give equal text.

    A node's label contains the step name, its kind (or called action), its risk
    and the team whose approval it needs, when set. Failure-path steps and
    compensation edges are dashed, and steps with a `when` condition get a
    double border.
    """
    graph = step_graph.graph
    lines = [f"digraph {_quote(step_graph.runbook.name.value)} {{", "  rankdir=TB;", "  node [shape=box];"]
    for name in sorted(graph.nodes):
        lines.append(f"  {_quote(name)} [{_node_attributes(graph.nodes[name])}];")
    for source, target in sorted(graph.edges):
        edge = graph.edges[source, target]
        attributes = []
        if edge.get("compensation"):
            attributes = ['label="on_failure"', "style=dashed", "color=red"]
        if edge.get("dependency") and edge.get("compensation"):
            attributes[0] = 'label="after, on_failure"'
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"  {_quote(source)} -> {_quote(target)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_attributes(node: Mapping[str, object]) -> str:
    label = [node["step"].name.value]
    if node["kind"] == "action":
        label.append(f"action {node['action']}")
    elif node["kind"] is not None:
        label.append(str(node["kind"]))
    if node["risk"] is not None:
        label.append(f"risk {node['risk']}")
    if node["approval"] is not None:
        label.append(f"approval from {node['approval']}")
    attributes = [f"label={_quote(chr(10).join(label))}"]
    if node["failure_path"]:
        attributes.append("style=dashed")
    if node["when"] is not None:
        attributes.append("peripheries=2")
    return ", ".join(attributes)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
