"""The dry run of a runbook: every step with the exact operation it would perform, with nothing executed.

`irules test-runbook --dry-run` prints this plan. Each step shows its order,
its condition and the condition's value where the alert alone decides it, the
argv or request with every template rendered, whether it needs approval, and
whether it changes anything. A value that an action's parameter pattern
rejects is reported here, before anyone is asked to approve it.

Templates and conditions that read `steps.NAME` depend on what earlier steps
produce, so the plan shows them as decided at run time instead of guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx

from compiler import ir
from compiler.evaluate import condition_holds
from compiler.transform import duration_text
from runtime.commands.explain import expression_text
from runtime.runbooks.model import StepRejected
from runtime.runbooks.operations import AT_RUN_TIME, render_operation, step_safety, template_values


@dataclass(slots=True)
class PlannedStep:
    name: str
    kind: str
    action: str | None
    after: list[str]
    mutating: bool
    risk: str
    condition: str | None = None
    condition_holds: bool | None = None
    operation: dict[str, Any] = field(default_factory=dict)
    approval: str | None = None
    compensates: list[str] = field(default_factory=list)
    rejected: str | None = None
    timeout_s: float | None = None
    retry: int = 0


@dataclass(slots=True)
class Plan:
    runbook: str
    title: str | None
    auto: bool
    timeout_s: float | None
    steps: list[PlannedStep]

    def side_effects(self) -> list[PlannedStep]:
        """Return the mutating steps that would run, in order."""
        return [step for step in self.steps if step.mutating and step.condition_holds is not False and not step.rejected]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "side_effects": [step.name for step in self.side_effects()]}


def build_plan(ruleset: ir.Ruleset, runbook: ir.Runbook, values: dict[str, Any]) -> Plan:
    """Return the plan of `runbook` for an alert's `values`, in an order that respects every dependency.

    `values` may lack the template names `label` and `annotation`; they are added as a run adds them.
    """
    values = template_values(values)
    actions = {action.name: action for action in ruleset.actions}
    steps = {step.name: step for step in runbook.steps}
    graph = nx.DiGraph()
    graph.add_nodes_from(steps)
    for step in runbook.steps:
        for before in step.depends_on:
            if before in steps:
                graph.add_edge(before, step.name)
    compensates: dict[str, list[str]] = {}
    for step in runbook.steps:
        if step.on_failure:
            compensates.setdefault(step.on_failure, []).append(step.name)
    written = {name: index for index, name in enumerate(steps)}
    order = list(nx.lexicographical_topological_sort(graph, key=lambda name: written[name]))
    approved_before = False
    planned = []
    for name in order:
        step = steps[name]
        item = _plan_step(step, actions, values)
        item.compensates = compensates.get(name, [])
        if item.approval is None and runbook.auto and item.mutating and item.risk == "high" and approved_before:
            item.approval = "covered by the approval step before it"
        approved_before = approved_before or step.kind == "approve"
        planned.append(item)
    return Plan(runbook.id, runbook.title, runbook.auto, runbook.timeout_s, planned)


def _plan_step(step: ir.Step, actions: dict[str, ir.Action], values: dict[str, Any]) -> PlannedStep:
    read_only, risk = step_safety(step, actions.get(step.action or ""))
    item = PlannedStep(
        name=step.name,
        kind=step.kind,
        action=step.action,
        after=list(step.depends_on),
        mutating=not read_only,
        risk=risk,
        approval=step.approval_team,
        timeout_s=step.timeout_s,
        retry=step.retry,
    )
    if step.when is not None:
        item.condition = expression_text(step.when)
        if not _reads_steps(step.when):
            try:
                item.condition_holds = condition_holds(step.when, values)
            except Exception as error:  # a condition that cannot be evaluated on this alert
                item.condition = f"{item.condition} (cannot be evaluated: {error})"
    try:
        item.operation = render_operation(step, actions, values, defer_step_reads=True)
    except StepRejected as error:
        item.rejected = str(error)
    if step.kind == "approve":
        item.approval = str(step.args[0]) if step.args else None
    return item


def _reads_steps(expr: Any) -> bool:
    if isinstance(expr, dict):
        if "path" in expr and expr["path"] and expr["path"][0] == "steps":
            return True
        return any(_reads_steps(value) for value in expr.values())
    if isinstance(expr, list):
        return any(_reads_steps(value) for value in expr)
    return False


def format_plan(plan: Plan) -> str:
    """Return the plan as the text `irules test-runbook --dry-run` prints."""
    mode = "automatic" if plan.auto else "manual"
    deadline = f", deadline {duration_text(plan.timeout_s)}" if plan.timeout_s else ""
    lines = [f"runbook {plan.runbook}" + (f": {plan.title}" if plan.title else "") + f" ({mode}{deadline})", ""]
    for number, step in enumerate(plan.steps, start=1):
        nature = "mutating" if step.mutating else "read-only"
        what = f"call {step.action}" if step.action else step.kind
        header = f"{number}. {step.name}  {what}  {nature}, risk {step.risk}"
        if step.timeout_s:
            header += f", timeout {duration_text(step.timeout_s)}"
        if step.retry:
            header += f", retry {step.retry}"
        lines.append(header)
        if step.after:
            lines.append(f"   after: {', '.join(step.after)}")
        if step.compensates:
            lines.append(f"   runs only when {', '.join(step.compensates)} fails")
        if step.condition is not None:
            if step.condition_holds is None:
                verdict = AT_RUN_TIME
            elif step.condition_holds:
                verdict = "true"
            else:
                verdict = "false: skipped"
            lines.append(f"   when {step.condition}: {verdict}")
        if step.approval:
            lines.append(f"   needs approval: {step.approval}")
        if step.rejected:
            lines.append(f"   REJECTED: {step.rejected}")
        lines.extend(f"   {line}" for line in _operation_lines(step.operation))
    effects = plan.side_effects()
    lines.append("")
    if effects:
        lines.append("side effects, in order: " + ", ".join(step.name for step in effects))
    else:
        lines.append("no side effects: every step that would run is read-only")
    return "\n".join(lines) + "\n"


def _operation_lines(operation: dict[str, Any]) -> list[str]:
    import shlex

    lines = []
    if "argv" in operation:
        lines.append("argv: " + shlex.join(operation["argv"]))
    if "method" in operation:
        lines.append(f"request: {operation['method']} {operation['url']}")
        for name, value in (operation.get("headers") or {}).items():
            lines.append(f"header: {name}: {value}")
        if operation.get("body"):
            lines.append(f"body: {operation['body']}")
        if operation.get("expect"):
            lines.append(f"expect: {operation['expect']}")
    if "query" in operation:
        lines.append(f"query: {operation['query']}")
    if "receiver" in operation:
        lines.append(
            f"notify: {operation['receiver']}" + (f" with template {operation['template']}" if operation.get("template") else "")
        )
    if "team" in operation:
        lines.append(
            f"approval from {operation['team']}"
            + (f", timeout {duration_text(operation['timeout_s'])}" if operation.get("timeout_s") else "")
        )
    if "seconds" in operation and operation["seconds"] is not None:
        lines.append(f"wait: {duration_text(float(operation['seconds']))}")
    if "template" in operation and "receiver" not in operation:
        lines.append(f"report: {operation['template']}")
    if "params" in operation:
        lines.append("params: " + ", ".join(f"{name}={value}" for name, value in operation["params"].items()))
    if "note" in operation:
        lines.append(operation["note"])
    return lines
