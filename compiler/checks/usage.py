"""Usage checks: declarations nothing refers to, and escalation steps that cannot fire.

A name counts as used when the name checks resolved a reference to it (in
`Symbols.used`), or when a declaration inside an environment block names it,
so that checking without `--env` does not flag what one environment needs.
Declarations of the standard library are never reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

from compiler import ast
from compiler.checks.context import SEVERITY_LEVELS, Context
from compiler.codes import Code
from compiler.diagnostics import Label

CODES = {
    "IR0901": Code(
        "receiver or team never used",
        "No route, escalation, runbook step or test sends to this receiver or team, so it\n"
        "never gets a notification. A team also counts as used when it owns services or\n"
        "has an escalation policy. Route alerts to it, or remove it.",
    ),
    "IR0902": Code(
        "template never used",
        "No channel, `notify` step or `report` step uses this template. Use it with\n`template NAME`, or remove it.",
    ),
    "IR0903": Code(
        "time interval never used",
        "No route mutes or activates with this time interval. Use it with\n"
        "`mute_during [NAME]` or `active_during [NAME]` on a route, or remove it.",
    ),
    "IR0904": Code(
        "escalation never used",
        "No team names this escalation policy, so its steps never run. Attach it with\n`escalation NAME` in a team, or remove it.",
    ),
    "IR0905": Code(
        "escalation steps for a severity that never occurs",
        "A `for severity [...]` block names a level that the `severity` declaration never\n"
        "assigns: no rule produces it and neither does the `else` fallback. The steps\n"
        "under it apply to no incident. Add a rule for the level, or remove it from the\n"
        "list. With `else classify` every level can occur, so this check stays quiet.",
    ),
    "IR0906": Code(
        "escalation step repeated",
        "Two steps of the same escalation (or of the same `for severity` block) wait the\n"
        "same time for the same state and take the same action. They fire together, so\n"
        "the second only sends the same notification again. Remove it, or change its delay.",
    ),
}


def _environment_references(context: Context) -> set[str]:
    """Return every name referred to inside an environment block, selected or not."""
    found: set[str] = set()
    for module in context.project.modules:
        for decl in module.decls:
            if isinstance(decl, ast.Environment):
                for inner in decl.decls:
                    found.update(_referenced_names(inner))
    return found


def _referenced_names(node: object) -> Iterator[str]:
    """Yield the values of every `Name` below `node` except the declaration's own name."""
    own = node.decl_name if isinstance(node, ast.Decl) else None
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Name):
            if current is not own:
                yield current.value
        elif isinstance(current, list):
            stack.extend(current)
        elif isinstance(current, ast.Node):
            stack.extend(getattr(current, item.name) for item in fields(current) if item.name != "span")


def _report_unused(context: Context, code: str, kind: str, decl: ast.Decl, help: str) -> None:
    if decl.decl_name.value in context.suggested:
        return
    context.sink.warning(
        code, f"{kind} `{decl.decl_name.value}` is never used", decl.decl_name.span, label="declared here", help=help
    )


def check_unused_receivers(context: Context) -> None:
    used = context.symbols.used
    elsewhere = _environment_references(context)
    for decl in context.project_decls():
        if not isinstance(decl, (ast.Team, ast.Receiver)):
            continue
        name = decl.name.value
        if ("receiver", name) in used or name in elsewhere:
            continue
        if isinstance(decl, ast.Team) and (("team", name) in used or _team_has_duties(decl)):
            continue
        _report_unused(context, "IR0901", decl.kind, decl, f"send alerts to it from a route (`-> {name}`), or remove it")


def _team_has_duties(team: ast.Team) -> bool:
    return any(isinstance(item, ast.Property) and item.key in ("owns", "escalation") for item in team.items)


def check_unused_declarations(context: Context) -> None:
    used = context.symbols.used
    elsewhere = _environment_references(context)
    kinds = {
        ast.Template: ("IR0902", "template", "use it with `template {name}` on a channel or step, or remove it"),
        ast.TimeInterval: (
            "IR0903",
            "time_interval",
            "use it with `mute_during [{name}]` or `active_during [{name}]`, or remove it",
        ),
        ast.Escalation: ("IR0904", "escalation", "attach it to a team with `escalation {name}`, or remove it"),
    }
    for decl in context.project_decls():
        entry = kinds.get(type(decl))
        if entry is None:
            continue
        code, kind, help_text = entry
        name = decl.decl_name.value
        if (kind, name) not in used and name not in elsewhere:
            _report_unused(context, code, "time interval" if kind == "time_interval" else kind, decl, help_text.format(name=name))


# ---------------------------------------------------------------- escalation steps


def _producible_levels(context: Context) -> set[str] | None:
    """Return the severity levels the project can assign, or None when any level may occur."""
    severities = context.symbols.severities
    if not severities:
        return None
    levels: set[str] = set()
    for decl in severities:
        levels.update(rule.level.value for rule in decl.rules)
        if decl.fallback is not None:
            if decl.fallback.classify:
                return None
            levels.add(decl.fallback.level.value)
    return levels


def check_unreachable_severity_steps(context: Context) -> None:
    levels = _producible_levels(context)
    if levels is None:
        return
    for decl in context.project_decls():
        if not isinstance(decl, ast.Escalation):
            continue
        for block in decl.items:
            if not isinstance(block, ast.EscalationSeverityBlock):
                continue
            for level in block.levels.items:
                if level.value in SEVERITY_LEVELS and level.value not in levels:
                    context.sink.warning(
                        "IR0905",
                        f"no severity rule assigns `{level.value}`, so these steps never run for it",
                        level.span,
                        label="never assigned",
                        help=f"add a rule such as `{level.value} when ...` to `severity`, or remove `{level.value}` here",
                    )


def check_repeated_steps(context: Context) -> None:
    for decl in context.project_decls():
        if not isinstance(decl, ast.Escalation):
            continue
        _check_step_list([item for item in decl.items if isinstance(item, ast.EscalationStep)], context)
        for block in decl.items:
            if isinstance(block, ast.EscalationSeverityBlock):
                _check_step_list(block.steps, context)


def _step_key(step: ast.EscalationStep) -> tuple[object, ...]:
    args = tuple(getattr(arg, "value", arg) for arg in step.action.args)
    return (step.delay.seconds, step.state, step.action.key, args)


def _check_step_list(steps: list[ast.EscalationStep], context: Context) -> None:
    seen: dict[tuple[object, ...], ast.EscalationStep] = {}
    for step in steps:
        first = seen.setdefault(_step_key(step), step)
        if first is not step:
            context.sink.warning(
                "IR0906",
                "escalation step repeats an earlier step",
                step.span,
                label="same delay, state and action",
                labels=(Label(first.span, "first written here"),),
                help="remove it, or give it another delay",
            )


CHECKS = [
    check_unused_receivers,
    check_unused_declarations,
    check_unreachable_severity_steps,
    check_repeated_steps,
]
