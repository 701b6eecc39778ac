"""Runbook checks: step graphs, step properties and runbook properties.

The order of steps, failure paths and the graph itself are described in
`compiler.stepgraph`. These checks add the rules below.

- Step names are unique within a runbook. `after` and `on_failure` name
  steps of the same runbook, never the step itself.
- Dependencies form no cycle. A cycle is printed as a path `a -> b -> a`,
  where each arrow points at a step that waits for the one before it.
- A step is unreachable when its `when` is the literal `false`, or when it
  is outside every failure path and waits for a failure-path step.
- `steps.X` and `step.X`, in a step's `when` or inside `{{ ... }}` or
  `{% ... %}` in the template strings of its arguments, read the output of
  step `X`. `X` must have finished before
  the reader starts: it must be an ancestor of the reader in the step graph
  (compensation edges count, so a rollback may read the step that failed).
  Reading an ancestor that has its own `when` is a warning, because a skipped
  step has no output.
- A step performs exactly one operation: one primitive (`run`, `http`,
  `query`, `notify`, `approve`, `wait`, `set`, `report`, `assist`) or one
  call of a declared action.
- `retry N` allows at most 10 retries, and only on steps that are
  `idempotent` or read-only. A step is read-only when it is marked
  `read_only`, when its primitive is one of `query`, `wait`, `notify`,
  `report`, `assist`, `approve` or `set`, or when the action it calls is
  marked `read_only` or performs only those primitives. `mutating` on the step
  or the action overrides all of these.
- `backoff`, `wait` and rate limit windows are longer than zero (zero
  timeouts are reported by `compiler.checks.values`). A step's `timeout`
  longer than its runbook's `timeout` is a warning.
- Action calls and action parameters are checked by
  `compiler.checks.action_calls`, whose checks run as part of this module.
- A runbook is either `auto` or `manual`, a `rate_limit` allows at least one
  run, and `concurrency` keys are `incident`, `runbook`, `service` or
  Prometheus label names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import networkx as nx

from compiler import ast
from compiler.checks import action_calls
from compiler.checks.action_calls import project_runbooks, quoted_list
from compiler.checks.context import Context
from compiler.codes import Code
from compiler.diagnostics import Label
from compiler.span import Span
from compiler.stepgraph import (
    StepGraph,
    first_of,
    performed,
    properties,
    step_attributes,
    step_items,
    unique_steps,
    written_steps,
)
from compiler.suggest import closest

MAX_RETRIES = 10
CONCURRENCY_KEYWORDS = ("incident", "runbook", "service")
_MAX_LISTED_STEPS = 6

_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Jinja expressions `{{ ... }}` and statements `{% ... %}` of a template string.
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)
_STEP_READ = re.compile(r"(?<![\w.])steps?\.([A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)")


def _graphs(context: Context) -> Iterator[StepGraph]:
    for runbook in project_runbooks(context):
        yield context.step_graph(runbook)


# ---------------------------------------------------------------- step names and references


def check_step_names_unique(context: Context) -> None:
    for runbook in project_runbooks(context):
        first: dict[str, ast.Step] = {}
        for step in written_steps(runbook):
            earlier = first.setdefault(step.name.value, step)
            if earlier is step:
                continue
            context.sink.error(
                "IR0501",
                f"step `{step.name.value}` is declared twice in runbook `{runbook.name.value}`",
                step.name.span,
                label="declared again here",
                labels=(Label(earlier.name.span, "first declared here"),),
                help="rename one of the steps; `after`, `on_failure` and `steps.NAME` need a unique name",
            )


def check_step_references(context: Context) -> None:
    for runbook in project_runbooks(context):
        known = list(unique_steps(runbook))
        for step in written_steps(runbook):
            for item in step.after.items if step.after is not None else []:
                _check_step_reference(context, runbook, step, item, "after", known)
            for prop in properties(step_items(step), "on_failure"):
                _check_step_reference(context, runbook, step, prop.args[0], "on_failure", known)


def _check_step_reference(
    context: Context, runbook: ast.Runbook, step: ast.Step, name: ast.Name, where: str, known: list[str]
) -> None:
    if name.value == step.name.value and where == "after":
        context.sink.error(
            "IR0503",
            f"step `{name.value}` depends on itself",
            name.span,
            label="names its own step",
            help=f"remove `{name.value}` from the `after` list",
        )
    elif name.value == step.name.value:
        context.sink.error(
            "IR0503",
            f"step `{name.value}` names itself in `on_failure`",
            name.span,
            label="names its own step",
            help=f"name a separate step that undoes the work of `{name.value}`",
        )
    elif name.value not in known:
        _unknown_step(context, runbook, name.value, name.span, known, f"`{where}` of step `{step.name.value}`")


def _unknown_step(context: Context, runbook: ast.Runbook, value: str, span: Span, known: list[str], where: str) -> None:
    suggestion = closest(value, known)
    if suggestion:
        help_text = f"a step with a similar name exists: `{suggestion}`"
    elif 0 < len(known) <= _MAX_LISTED_STEPS:
        help_text = f"runbook `{runbook.name.value}` has the steps {quoted_list(known)}"
    else:
        help_text = f"name a step declared in runbook `{runbook.name.value}`"
    context.sink.error(
        "IR0502",
        f"unknown step `{value}` in {where}",
        span,
        label=f"no step of this name in runbook `{runbook.name.value}`",
        help=help_text,
    )


# ---------------------------------------------------------------- graph shape


def check_step_cycles(context: Context) -> None:
    for step_graph in _graphs(context):
        dependencies = step_graph.dependencies
        position = {name: index for index, name in enumerate(step_graph.order)}
        components = [sorted(part, key=position.__getitem__) for part in nx.strongly_connected_components(dependencies)]
        for component in sorted(components, key=lambda part: position[part[0]]):
            if len(component) > 1:
                _report_cycle(context, step_graph, dependencies.subgraph(component), component[0])


def _report_cycle(context: Context, step_graph: StepGraph, component: nx.DiGraph, start: str) -> None:
    # Start at the step written first: the edge back into it is always an
    # explicit `after`, because the default order only points forward.
    paths = [nx.shortest_path(component, start, last) for last in component.predecessors(start)]
    path = min(paths, key=len)
    closing = step_graph.graph.edges[path[-1], start]
    span = closing.get("span") or step_graph.step(start).name.span
    cycle = " -> ".join([*path, start])
    context.sink.error(
        "IR0504",
        f"steps of runbook `{step_graph.runbook.name.value}` wait for each other in a cycle: `{cycle}`",
        span,
        label="this dependency closes the cycle",
        help="remove one of these dependencies; each arrow points at a step that waits for the one before it",
    )


def check_unreachable_steps(context: Context) -> None:
    for step_graph in _graphs(context):
        graph = step_graph.graph
        for name in step_graph.order:
            condition = graph.nodes[name]["when"]
            if isinstance(condition, ast.Bool) and not condition.value:
                context.sink.error(
                    "IR0505",
                    f"step `{name}` never runs because its condition is `false`",
                    condition.span,
                    label="always false",
                    help="remove the step, or give it a condition that can be true",
                )
            if not graph.nodes[name]["failure_path"]:
                _check_waits_for_failure_path(context, step_graph, name)


def _check_waits_for_failure_path(context: Context, step_graph: StepGraph, name: str) -> None:
    graph = step_graph.graph
    for before in sorted(step_graph.dependencies.predecessors(name)):
        if not graph.nodes[before]["failure_path"]:
            continue
        edge = graph.edges[before, name]
        context.sink.error(
            "IR0505",
            f"step `{name}` can never run because it waits for `{before}`, which runs only after a failure",
            edge.get("span") or step_graph.step(name).name.span,
            label=f"`{before}` is on a failure path",
            help=f"list only failure-path steps in the `after` of `{name}`, or remove `{before}` from it",
        )


# ---------------------------------------------------------------- reading the output of steps


def check_step_output_reads(context: Context) -> None:
    for step_graph in _graphs(context):
        for name in step_graph.order:
            step = step_graph.step(name)
            for read, span in _step_reads(step):
                _check_step_read(context, step_graph, name, read, span)


def _check_step_read(context: Context, step_graph: StepGraph, reader: str, read: str, span: Span) -> None:
    graph = step_graph.graph
    if read not in graph:
        _unknown_step(context, step_graph.runbook, read, span, step_graph.order, f"step `{reader}`")
        return
    if read == reader:
        context.sink.error(
            "IR0506",
            f"step `{reader}` reads its own output",
            span,
            label="this step has not finished here",
            help="a step's output exists only after it finishes; read it in a step that runs after this one",
        )
        return

    ancestors = step_graph.ancestors(reader)
    if read not in ancestors:
        context.sink.error(
            "IR0506",
            f"step `{reader}` reads the output of step `{read}`, which may not have run before it",
            span,
            label=f"`{read}` is not among the steps that `{reader}` waits for",
            help=_wait_for_help(step_graph, reader, read),
        )
        return

    condition = graph.nodes[read]["when"]
    compensation = graph.nodes[read]["on_failure"]
    # A step that runs because `read` failed starts only after `read` ran, so `read` was not skipped.
    if condition is not None and compensation not in ancestors | {reader}:
        context.sink.warning(
            "IR0507",
            f"step `{reader}` reads the output of step `{read}`, which may have been skipped",
            span,
            label=f"`{read}` runs only when its condition holds",
            labels=(Label(condition.span, f"condition of `{read}`"),),
            help=f"a skipped step has no output; test the condition of `{read}` here before reading its output",
        )


def _wait_for_help(step_graph: StepGraph, reader: str, read: str) -> str:
    nodes = step_graph.graph.nodes
    if nodes[read]["failure_path"] and not nodes[reader]["failure_path"]:
        return f"`{read}` runs only after a failure; read its output in a step of the same failure path"
    return f"make step `{reader}` wait for it: `after {', '.join([*_dependencies(step_graph, reader), read])}`"


def _dependencies(step_graph: StepGraph, name: str) -> list[str]:
    position = {step: index for index, step in enumerate(step_graph.order)}
    return sorted(step_graph.dependencies.predecessors(name), key=position.__getitem__)


def _step_reads(step: ast.Step) -> Iterator[tuple[str, Span]]:
    """Yield each step name read by `steps.X` or `step.X` in the step's condition and arguments."""
    for node in _read_nodes(step):
        if isinstance(node, ast.Path) and len(node.parts) >= 2 and node.parts[0] in ("steps", "step"):
            yield node.parts[1], node.part_spans[1]
        elif isinstance(node, ast.Str):
            yield from _template_reads(node)


def _read_nodes(step: ast.Step) -> Iterator[object]:
    for item in step_items(step):
        if isinstance(item, ast.Property) and item.key == "when":
            yield from _walk(item.args)
        elif isinstance(item, ast.StepKind):
            # `set TARGET = VALUE` writes its target; only the value is read.
            yield from _walk(item.args[1:] if item.kind == "set" else item.args)
            yield from _walk(item.options)
        elif isinstance(item, ast.ActionCall):
            yield from _walk(item.args)


def _walk(node: object) -> Iterator[object]:
    if isinstance(node, list):
        for child in node:
            yield from _walk(child)
    elif isinstance(node, ast.Node):
        yield node
        for name in type(node).__dataclass_fields__:
            if name != "span":
                yield from _walk(getattr(node, name))


def _template_reads(text: ast.Str) -> Iterator[tuple[str, Span]]:
    for template in _TEMPLATE.finditer(text.value):
        group = 1 if template.group(1) is not None else 2
        for read in _STEP_READ.finditer(template.group(group)):
            offset = template.start(group) + read.start(1)
            yield read.group(1), _inner_span(text, offset, len(read.group(1)))


def _inner_span(text: ast.Str, offset: int, length: int) -> Span:
    """Return the span of `length` characters at `offset` in the string's value, or the whole string."""
    span = text.span
    # Offsets map one to one only for one-line strings without escapes.
    if text.block or span.line != span.end_line or span.end - span.start != len(text.value) + 2:
        return span
    start = span.start + 1 + offset
    column = span.column + 1 + offset
    return Span(span.path, start, start + length, span.line, column, span.line, column + length)


# ---------------------------------------------------------------- step properties


def check_step_performs_one_operation(context: Context) -> None:
    for runbook in project_runbooks(context):
        for step in written_steps(runbook):
            operations = performed(step)
            if not operations:
                context.sink.error(
                    "IR0508",
                    f"step `{step.name.value}` performs no operation",
                    step.name.span,
                    label="nothing to run",
                    help="give the step one operation, such as `run [...]`, `notify TEAM` or a call of a declared action",
                )
            elif len(operations) > 1:
                context.sink.error(
                    "IR0508",
                    f"step `{step.name.value}` performs more than one operation",
                    _operation_span(operations[1]),
                    label="second operation",
                    labels=(Label(_operation_span(operations[0]), "first operation"),),
                    help="split it into steps that perform one operation each",
                )


def _operation_span(operation: ast.StepKind | ast.ActionCall) -> Span:
    return operation.kind_span if isinstance(operation, ast.StepKind) else operation.action.span


def check_step_retries(context: Context) -> None:
    for runbook in project_runbooks(context):
        for step in written_steps(runbook):
            attributes = step_attributes(step, context.symbols.actions)
            for prop in properties(step_items(step), "retry"):
                _check_retry(context, step, prop, attributes)


def _check_retry(context: Context, step: ast.Step, prop: ast.Property, attributes: dict[str, object]) -> None:
    count = prop.args[0]
    if count.value > MAX_RETRIES:
        context.sink.error(
            "IR0509",
            f"step `{step.name.value}` retries {count.value} times, more than the maximum of {MAX_RETRIES}",
            count.span,
            label=f"at most {MAX_RETRIES}",
            help=f"retry at most {MAX_RETRIES} times, and lengthen `backoff` to wait longer between attempts",
        )
    if count.value > 0 and not attributes["idempotent"] and not attributes["read_only"]:
        context.sink.error(
            "IR0510",
            f"step `{step.name.value}` retries, but it is neither idempotent nor read-only",
            prop.key_span,
            label="retries are only for idempotent or read-only steps",
            help="mark the step `idempotent` if running it twice has the same effect as running it once, or remove `retry`",
        )


def check_step_timeouts(context: Context) -> None:
    for runbook in project_runbooks(context):
        limits = properties(runbook.items, "timeout")
        limit = first_of(limits[0].args, ast.Duration) if limits else None
        if limit is None or limit.seconds <= 0:
            continue
        for step in written_steps(runbook):
            for prop in properties(step_items(step), "timeout"):
                duration = first_of(prop.args, ast.Duration)
                if duration is not None and duration.seconds > limit.seconds:
                    context.sink.warning(
                        "IR0511",
                        f"step `{step.name.value}` has a timeout of {duration.text}, longer than its runbook's {limit.text}",
                        duration.span,
                        label="longer than the runbook's timeout",
                        labels=(Label(limit.span, "runbook timeout"),),
                        help=f"the runbook stops after {limit.text}; shorten the step's timeout or lengthen the runbook's",
                    )


def check_zero_durations(context: Context) -> None:
    # Zero timeouts, approval timeouts and `approve` timeouts are reported by
    # `compiler.checks.values` (IR0307); this check covers the other durations.
    for runbook in project_runbooks(context):
        for prop in properties(runbook.items, "rate_limit"):
            _check_positive(context, prop.args, "the `rate_limit` window")
        for step in written_steps(runbook):
            _check_positive_items(context, step_items(step))
    for decl in context.project_decls():
        if isinstance(decl, ast.Action):
            _check_positive_items(context, decl.items)


def _check_positive_items(context: Context, items: list[object]) -> None:
    for item in items:
        if isinstance(item, ast.Property) and item.key == "retry":
            _check_positive(context, item.args, "`backoff`")
        elif isinstance(item, ast.StepKind) and item.kind == "wait":
            _check_positive(context, item.args, "`wait`")


def _check_positive(context: Context, args: list[object], setting: str) -> None:
    duration = first_of(args, ast.Duration)
    if duration is not None and duration.seconds <= 0:
        context.sink.error(
            "IR0512",
            f"{setting} must be longer than zero",
            duration.span,
            label="zero",
            help="write a duration longer than zero, such as `30s`",
        )


# ---------------------------------------------------------------- runbook properties


def check_auto_or_manual(context: Context) -> None:
    for runbook in project_runbooks(context):
        modes = [item for item in runbook.items if isinstance(item, ast.Property) and item.key in ("auto", "manual")]
        first = modes[0] if modes else None
        for mode in modes[1:]:
            if mode.key == first.key:
                continue
            context.sink.error(
                "IR0522",
                f"runbook `{runbook.name.value}` is both `auto` and `manual`",
                mode.key_span,
                label=f"`{mode.key}` here",
                labels=(Label(first.key_span, f"`{first.key}` here"),),
                help="keep `auto` to start the runbook when it triggers, or `manual` to wait for an operator",
            )


def check_rate_limits(context: Context) -> None:
    for runbook in project_runbooks(context):
        for prop in properties(runbook.items, "rate_limit"):
            count = prop.args[0]
            if isinstance(count, ast.Int) and count.value == 0:
                context.sink.error(
                    "IR0523",
                    f"`rate_limit 0` never lets runbook `{runbook.name.value}` run",
                    count.span,
                    label="no runs allowed",
                    help="allow at least one run per window, such as `rate_limit 1 per 1h`",
                )


def check_concurrency_keys(context: Context) -> None:
    for runbook in project_runbooks(context):
        for prop in properties(runbook.items, "concurrency"):
            for key in prop.args[0].items:
                _check_concurrency_key(context, key)


def _check_concurrency_key(context: Context, key: ast.Name) -> None:
    if key.value in CONCURRENCY_KEYWORDS:
        return
    if not _LABEL_NAME.fullmatch(key.value):
        context.sink.error(
            "IR0524",
            f"invalid concurrency key `{key.value}`",
            key.span,
            label="not a label name",
            help="use `incident`, `runbook`, `service` or a label name made of letters, digits and underscores",
        )
        return
    suggestion = closest(key.value, CONCURRENCY_KEYWORDS)
    if suggestion:
        context.sink.warning(
            "IR0525",
            f"concurrency key `{key.value}` is read as a label name",
            key.span,
            label="a label name",
            help=f"write `{suggestion}` to allow one run per {suggestion}; keep `{key.value}` only for a label of that name",
        )


def check_exit_codes(context: Context) -> None:
    """`exit_codes` of a `run` step: a non-empty list of distinct codes from 0 to 255."""
    items: list[object] = []
    for runbook in project_runbooks(context):
        for step in written_steps(runbook):
            items.extend(step_items(step))
    for decl in context.project_decls():
        if isinstance(decl, ast.Action):
            items.extend(decl.items)
    for item in items:
        if not isinstance(item, ast.StepKind):
            continue
        for option in item.options:
            if option.key == "exit_codes":
                _check_exit_code_list(context, option)


def _check_exit_code_list(context: Context, option: ast.Property) -> None:
    codes = option.args[0]
    if not codes.items:
        context.sink.error(
            "IR0526",
            "`exit_codes` lists no exit code",
            codes.span,
            label="empty list",
            help="list the exit codes that count as success, such as `[0, 2]`, or drop the option for `[0]`",
        )
    seen: set[int] = set()
    for code in codes.items:
        if not 0 <= code.value <= 255:
            context.sink.error(
                "IR0526",
                f"exit code `{code.value}` is outside 0 to 255",
                code.span,
                label="no process can exit with this code",
                help="exit codes are bytes: use a value from 0 to 255",
            )
        elif code.value in seen:
            context.sink.error(
                "IR0526", f"exit code `{code.value}` is listed twice", code.span, label="repeated", help="remove the repetition"
            )
        seen.add(code.value)


CHECKS = [
    check_step_names_unique,
    check_step_references,
    check_step_cycles,
    check_unreachable_steps,
    check_step_output_reads,
    check_step_performs_one_operation,
    check_step_retries,
    check_step_timeouts,
    check_zero_durations,
    *action_calls.CHECKS,
    check_auto_or_manual,
    check_rate_limits,
    check_concurrency_keys,
    check_exit_codes,
]

CODES = {
    **action_calls.CODES,
    "IR0526": Code(
        "invalid exit codes",
        "`run [...] exit_codes [0, 2]` lists the exit codes that count as success of the\n"
        "command; without it only 0 does. Codes are bytes from 0 to 255, each listed once,\n"
        "and the list cannot be empty.",
    ),
    "IR0501": Code(
        "duplicate step name",
        "Two steps of one runbook share a name. `after`, `on_failure` and `steps.NAME`\n"
        "refer to steps by name, so names must be unique within a runbook, including the\n"
        "steps of `parallel` groups. Steps of different runbooks may share names.",
    ),
    "IR0502": Code(
        "unknown step",
        "`after`, `on_failure`, or a `steps.NAME` read in a condition or template names a\n"
        "step that the runbook does not declare. Steps are referred to only within their\n"
        "own runbook.",
    ),
    "IR0503": Code(
        "step refers to itself",
        "A step names itself in `after` or `on_failure`. A step cannot wait for itself,\n"
        "and a compensation step must be a separate step that undoes the work of the\n"
        "failed one.",
    ),
    "IR0504": Code(
        "dependency cycle",
        "Steps wait for each other in a cycle, so none of them can start. The message\n"
        "prints the cycle as a path such as `a -> b -> a`; each arrow points at a step\n"
        "that waits for the one before it. The caret marks the `after` that closes the\n"
        "cycle. Steps without `after` wait for the step written before them, so a cycle\n"
        "may run through that default order too.",
    ),
    "IR0505": Code(
        "unreachable step",
        "The step can never run. Either its `when` is the literal `false`, or it waits for\n"
        "a step on a failure path while being outside every failure path itself.\n"
        "\n"
        "A failure path is a compensation step (named by some step's `on_failure`) and\n"
        "the steps whose `after` names only failure-path steps. Once a step fails, only\n"
        "failure-path steps start, and before any failure no failure-path step runs. A\n"
        "step outside every failure path that waits for a failure-path step therefore\n"
        "never starts, and neither do the steps that wait for it.",
    ),
    "IR0506": Code(
        "read of a step that may not have run",
        "A condition or template reads `steps.NAME` (or `step.NAME`), but step NAME is\n"
        "not among the steps that must finish before the reading step starts: it may run\n"
        "later, concurrently, or not at all. Make the reading step wait for it with\n"
        "`after`. A compensation step may read the step whose failure it handles.",
    ),
    "IR0507": Code(
        "read of a step that may have been skipped",
        "The step being read runs before the reader, but it has a `when` condition of its\n"
        "own. When that condition is false the step is skipped, and it has no output.\n"
        "Test the same condition before reading its output, or drop the `when`.",
    ),
    "IR0508": Code(
        "step without exactly one operation",
        "Each step performs one operation: a primitive (`run`, `http`, `query`, `notify`,\n"
        "`approve`, `wait`, `set`, `report`, `assist`) or a call of a declared action.\n"
        "Retries, timeouts and `on_failure` apply to that one operation, so a step with\n"
        "two must be split into two steps.",
    ),
    "IR0509": Code(
        "too many retries",
        "`retry N` allows at most 10 retries. To keep trying for longer, lengthen the\n`backoff` between attempts instead.",
    ),
    "IR0510": Code(
        "retry of a step that changes things",
        "Retries are only for steps that are safe to run twice: steps marked `idempotent`,\n"
        "and read-only steps. A step is read-only when it says `read_only`, when its\n"
        "primitive is `query`, `wait`, `notify`, `report`, `assist`, `approve` or `set`, or\n"
        "when the action it calls is read-only; `mutating` overrides all of these. Mark\n"
        "the step `idempotent` if running it twice has the same effect as running it\n"
        "once, or remove `retry`.",
    ),
    "IR0511": Code(
        "step timeout longer than the runbook's",
        "The runbook's `timeout` bounds the whole run, so a step with a longer `timeout`\n"
        "is stopped with the runbook before its own timeout expires.",
    ),
    "IR0512": Code(
        "zero duration",
        "A zero `backoff` would retry without a pause, a zero `wait` waits for nothing and\n"
        "a zero `rate_limit` window limits nothing. Write a duration longer than zero.\n"
        "Zero timeouts are reported as IR0307.",
    ),
    "IR0522": Code(
        "runbook both `auto` and `manual`",
        "`auto` starts a runbook as soon as its `when` matches an incident; `manual` waits\n"
        "for an operator to start it. A runbook is one or the other.",
    ),
    "IR0523": Code(
        "rate limit of zero",
        "`rate_limit N per D` allows N runs per window D. A limit of zero would never let\n"
        "the runbook run. To turn a runbook off, remove it.",
    ),
    "IR0524": Code(
        "invalid concurrency key",
        "`concurrency [...]` lists the keys that group the runs of a runbook, and at most\n"
        "one run per group is active at a time. A key is `incident`, `runbook`, `service`\n"
        "or the name of a label, whose value then groups the runs. Label names\n"
        "follow Prometheus: letters, digits and underscores, not starting with a digit.",
    ),
    "IR0525": Code(
        "concurrency key close to a keyword",
        "A concurrency key that is not `incident`, `runbook` or `service` is read as a\n"
        "label name. This one is spelt like one of those keywords, which usually means a\n"
        "typo; a label of that name is rare.",
    ),
}
