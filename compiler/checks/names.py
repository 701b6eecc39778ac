"""Name resolution: every reference by name points at a declaration of the right kind."""

from __future__ import annotations

from collections.abc import Iterator

from compiler import ast
from compiler.checks.context import SEVERITY_LEVELS, Context


def _names(node: object) -> Iterator[ast.Name]:
    if isinstance(node, ast.Name):
        yield node
    elif isinstance(node, ast.NameList):
        yield from node.items


def _props(items: list[object], *keys: str) -> Iterator[ast.Property]:
    for item in items:
        if isinstance(item, ast.Property) and item.key in keys:
            yield item


def check_route_references(context: Context) -> None:
    symbols = context.symbols
    for decl in symbols.routes:
        for route in _walk(decl.root):
            if route.receiver is not None:
                context.resolve("receiver", route.receiver, symbols.receivers, what="route")
            for prop in _props(route.items, "mute_during", "active_during"):
                for name in _names(prop.args[0]):
                    context.resolve("time_interval", name, symbols.time_intervals, what="route")


def _walk(route: ast.Route) -> Iterator[ast.Route]:
    yield route
    for child in route.children:
        yield from _walk(child)


def check_team_references(context: Context) -> None:
    symbols = context.symbols
    for decl in context.project.decls:
        if isinstance(decl, ast.Team):
            for prop in _props(decl.items, "owns"):
                for name in _names(prop.args[0]):
                    context.resolve("service", name, symbols.services, what=f"team `{decl.name.value}`")
            for prop in _props(decl.items, "escalation"):
                context.resolve("escalation", prop.args[0], symbols.escalations, what=f"team `{decl.name.value}`")
        if isinstance(decl, (ast.Team, ast.Receiver)):
            channels = decl.channels
            for channel in channels:
                for prop in _props(channel.options, "template"):
                    context.resolve("template", prop.args[0], symbols.templates, what=f"{decl.kind} `{decl.name.value}`")


def check_service_references(context: Context) -> None:
    symbols = context.symbols
    for service in symbols.services.values():
        for prop in _props(service.items, "team"):
            context.resolve("team", prop.args[0], symbols.teams, what=f"service `{service.name.value}`")
        for prop in _props(service.items, "depends_on"):
            for name in _names(prop.args[0]):
                context.resolve("service", name, symbols.services, what=f"service `{service.name.value}`")


def check_escalation_references(context: Context) -> None:
    symbols = context.symbols
    for escalation in symbols.escalations.values():
        steps: list[ast.EscalationStep] = []
        for item in escalation.items:
            if isinstance(item, ast.EscalationStep):
                steps.append(item)
            elif isinstance(item, ast.EscalationSeverityBlock):
                steps.extend(item.steps)
                for level in item.levels.items:
                    check_level(context, level)
        for step in steps:
            if step.action.key in {"notify", "page"}:
                context.resolve("receiver", step.action.args[0], symbols.receivers, what=f"escalation `{escalation.name.value}`")


def check_level(context: Context, level: ast.Name) -> None:
    if level.value not in SEVERITY_LEVELS:
        context.unknown("severity level", level.value, level.span, SEVERITY_LEVELS)


def check_severity_levels(context: Context) -> None:
    for decl in context.symbols.severities:
        for rule in decl.rules:
            check_level(context, rule.level)
        if decl.fallback is not None:
            if decl.fallback.level is not None:
                check_level(context, decl.fallback.level)
            for prop in _props(decl.fallback.options, "fallback"):
                check_level(context, prop.args[0])


def check_pagerduty_references(context: Context) -> None:
    symbols = context.symbols
    for decl in symbols.pagerduty:
        for item in decl.items:
            if isinstance(item, ast.Property) and item.key == "priority":
                check_level(context, item.args[0])
            if isinstance(item, ast.PagerDutyRule):
                for prop in _props(item.items, "route_to"):
                    context.resolve("team", prop.args[0], symbols.teams, what="pagerduty rule")
                for prop in _props(item.items, "severity"):
                    check_level(context, prop.args[0])


def check_use_references(context: Context) -> None:
    symbols = context.symbols
    for use in symbols.uses:
        if use.what.value != "runbooks":
            context.sink.error(
                "IR0205",
                f"`use` cannot enable `{use.what.value}`",
                use.what.span,
                help="the standard library offers stock runbooks: `use runbooks [rb-001]`",
            )
            continue
        for name in use.names.items:
            if name.value in symbols.runbooks:
                continue
            found = context.resolve("runbook", name, symbols.stdlib_runbooks, what="`use runbooks`")
            if found is not None:
                symbols.runbooks[name.value] = found  # type: ignore[assignment]


def check_runbook_references(context: Context) -> None:
    symbols = context.symbols
    for runbook in list(symbols.runbooks.values()) + list(symbols.actions.values()):
        where = f"{runbook.kind} `{runbook.name.value}`"
        for item in _step_items(runbook):
            if isinstance(item, ast.ActionCall):
                context.resolve("action", item.action, symbols.actions, what=where)
            elif isinstance(item, ast.StepKind):
                _check_step_kind(context, item, where)
            elif isinstance(item, ast.Property) and item.key == "approval":
                context.resolve("team", item.args[0], symbols.teams, what=where)


def _step_items(decl: ast.Runbook | ast.Action) -> Iterator[object]:
    if isinstance(decl, ast.Action):
        yield from decl.items
        return
    for item in decl.items:
        if isinstance(item, ast.Parallel):
            steps = item.steps
        elif isinstance(item, ast.Step):
            steps = [item]
        else:
            steps = []
        for step in steps:
            yield from step.items


def _check_step_kind(context: Context, item: ast.StepKind, where: str) -> None:
    symbols = context.symbols
    if item.kind == "notify":
        context.resolve("receiver", item.args[0], symbols.receivers, what=where)
        if len(item.args) > 1 and item.args[1] is not None:
            context.resolve("template", item.args[1], symbols.templates, what=where)
    elif item.kind == "approve":
        context.resolve("team", item.args[0], symbols.teams, what=where)
    elif item.kind == "report":
        context.resolve("template", item.args[0], symbols.templates, what=where)


def check_test_references(context: Context) -> None:
    symbols = context.symbols
    for test in symbols.tests:
        for item in test.items:
            if not isinstance(item, ast.TestItem):
                continue  # Scenario events name labels only.
            if item.key == "expect receivers":
                for name in _names(item.args[0]):
                    context.resolve("receiver", name, symbols.receivers, what="test")
            elif item.key == "expect runbooks":
                for name in _names(item.args[0]):
                    context.resolve("runbook", name, symbols.runbooks, what="test")
            elif item.key == "expect severity":
                check_level(context, item.args[0])


CHECKS = [
    check_use_references,
    check_route_references,
    check_team_references,
    check_service_references,
    check_escalation_references,
    check_severity_levels,
    check_pagerduty_references,
    check_runbook_references,
    check_test_references,
]
