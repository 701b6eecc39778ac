"""Safety: automatic runbooks ask before risky changes, and alert data never becomes code.

Three rules. A high-risk step that changes something needs a person's approval
when its runbook runs on its own. A template value never lands where a shell
parses it, or inside quotes that `run` would pass on literally. And JSON is
never built by pasting a value between quotes: `{{ value | tojson }}` writes a
valid JSON value whatever the alert contains.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from compiler import ast
from compiler.checks.context import Context
from compiler.checks.templates import TAG, has_template, template_strings, value_span
from compiler.codes import Code
from compiler.diagnostics import Label
from compiler.stepgraph import StepGraph, properties, step_items, written_steps

CODES = {
    "IR0601": Code(
        "high-risk step runs without approval",
        "An `auto` runbook starts without a person. A step that changes something and is\n"
        "marked `risk high` (on the step or on the action it calls) must wait for a\n"
        "person first: give the step `approval from TEAM`, or make it run after an\n"
        "`approve from TEAM timeout D` step (directly or through `after`). A step's own\n"
        "`risk` cannot lower the risk that its action declares.",
    ),
    "IR0602": Code(
        "template value in a shell command",
        "`run` executes its argv without a shell, so a value inserted with `{{ ... }}` stays\n"
        "one argument. When the program is itself a shell (`sh -c`, `bash -c`, `cmd /c`,\n"
        "`pwsh -Command`, or `ssh`, whose command runs in a remote shell), the shell parses\n"
        "the inserted value, and a label such as `x; rm -rf /` runs as code. Run the program\n"
        "directly, or pass the value after the script as a positional parameter and read\n"
        'it there as `"$1"`: `["sh", "-c", "kill \\"$1\\"", "sh", "{{ label.pid }}"]`.',
    ),
    "IR0603": Code(
        "template value inside quotes in an argument",
        "`run` passes each argument to the program as written, without a shell, so quotes\n"
        "inside an argument are not removed: `\"--filter='{{ label.x }}'\"` hands the program\n"
        'the quote characters too. Drop the inner quotes: `"--filter={{ label.x }}"` is\n'
        "already one argument, whatever the value contains.",
    ),
    "IR0604": Code(
        "template value inside a JSON string",
        "A JSON body built as text breaks when a value contains a quote or a backslash, and\n"
        'a crafted value can add fields: `"{\\"name\\": \\"{{ label.x }}\\"}"`. Write the value\n'
        'without the quotes around it and let Jinja encode it: `"{\\"name\\": {{ label.x | tojson }}}"`.',
    ),
    "IR0605": Code(
        "empty command",
        "`run [...]` needs at least the program to execute as its first element.",
    ),
    "IR0606": Code(
        "program chosen by a template",
        "The first element of `run [...]` is the program to execute. It must be written in\n"
        "the rules, so that alert data cannot choose which program runs.",
    ),
}

# ---------------------------------------------------------------- approval of risky steps


def check_auto_runbook_approvals(context: Context) -> None:
    actions = context.symbols.actions
    for runbook in context.symbols.runbooks.values():
        auto = next(iter(properties(runbook.items, "auto")), None)
        if auto is None:
            continue
        graph = context.step_graph(runbook)
        for name in graph.order:
            node = graph.graph.nodes[name]
            if node["kind"] is None or not node["mutating"] or node["approval"]:
                continue
            declared = _high_risk(node["step"], actions)
            if declared is not None and not _runs_after_approval(graph, name):
                _report_unapproved(context, node["step"], declared, auto)


def _high_risk(step: ast.Step, actions: dict[str, ast.Action]) -> tuple[ast.Property, ast.Action | None] | None:
    """Return the `risk high` property that applies to the step: its own, or its action's."""
    items = step_items(step)
    for prop in properties(items, "risk"):
        if prop.args[0].value == "high":
            return prop, None
    for item in items:
        if isinstance(item, ast.ActionCall) and item.action.value in actions:
            action = actions[item.action.value]
            for prop in properties(action.items, "risk"):
                if prop.args[0].value == "high":
                    return prop, action
    return None


def _runs_after_approval(graph: StepGraph, name: str) -> bool:
    return any(graph.graph.nodes[before]["kind"] == "approve" for before in graph.ancestors(name))


def _report_unapproved(
    context: Context, step: ast.Step, declared: tuple[ast.Property, ast.Action | None], auto: ast.Property
) -> None:
    risk, action = declared
    labels = [Label(auto.span, "this runbook starts without a person")]
    if action is None:
        span, label = risk.span, "high risk, and the step changes state"
    else:
        call = next(item for item in step_items(step) if isinstance(item, ast.ActionCall))
        span, label = call.action.span, f"action `{action.name.value}` is high risk and changes state"
        labels.append(Label(risk.span, "declared here"))
    context.sink.error(
        "IR0601",
        f"high-risk step `{step.name.value}` runs without approval in an automatic runbook",
        span,
        label=label,
        labels=tuple(labels),
        help="add `approval from TEAM` to the step, or make it run after an `approve from TEAM timeout 15m` step",
    )


# ---------------------------------------------------------------- commands


# Shells that take a script with `-c` and leave the arguments after it as `$0`, `$1`, ...
_POSIX_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish"})
# Programs that parse every later argument as command text.
_WHOLE_LINE_SHELLS = frozenset({"pwsh", "powershell", "cmd", "ssh"})
# Programs that run the program named after their own options.
_WRAPPERS = frozenset({"env", "sudo", "doas", "nice", "nohup", "setsid", "stdbuf", "timeout", "busybox", "exec", "command"})
_WRAPPER_OPTIONS_WITH_VALUE = frozenset({"-u", "-g", "-n", "-C", "-D", "-p", "-k", "-s", "-S", "-h", "-U", "-r", "-t"})
_WRAPPER_ARGUMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*|\d+(?:\.\d+)?[smhd]?", re.S)
_COMMAND_FLAG = re.compile(r"-[A-Za-z]*c[A-Za-z]*|-Command|-EncodedCommand|/[cCkK]", re.S)


def program_name(arg: str) -> str:
    """Return the bare program name of an argv element: `/usr/bin/bash` and `BASH.EXE` are `bash`."""
    name = re.split(r"[/\\]", arg)[-1].lower()
    return name.removesuffix(".exe")


def shell_parsed(argv: list[str]) -> tuple[int, list[int]] | None:
    """Return the index of a shell in `argv` and the indices of the arguments it parses as code."""
    start = _program_index(argv)
    for index, arg in enumerate(argv):
        name = program_name(arg)
        if name not in _POSIX_SHELLS and name not in _WHOLE_LINE_SHELLS:
            continue
        after_separator = index > 0 and argv[index - 1] == "--"
        with_command = index + 1 < len(argv) and _COMMAND_FLAG.fullmatch(argv[index + 1]) is not None
        if index == start or after_separator or with_command:
            if name in _WHOLE_LINE_SHELLS:
                return index, list(range(index + 1, len(argv)))
            return index, _posix_parsed(argv, index)
    return None


def _program_index(argv: list[str]) -> int:
    """Return the index of the program that actually runs, past wrappers such as `sudo` and `env`."""
    index = 0
    while index < len(argv) and program_name(argv[index]) in _WRAPPERS:
        index += 1
        while index < len(argv) and (argv[index].startswith("-") or _WRAPPER_ARGUMENT.fullmatch(argv[index])):
            index += 2 if argv[index] in _WRAPPER_OPTIONS_WITH_VALUE else 1
    return index


def _posix_parsed(argv: list[str], shell: int) -> list[int]:
    """Return the options of a POSIX shell and its script (the `-c` text or the script path)."""
    parsed = []
    index = shell + 1
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            index += 1
            break
        if arg in ("-o", "+o", "-O", "+O"):
            parsed.extend((index, index + 1))
            index += 2
            continue
        if len(arg) < 2 or arg[0] not in "-+":
            break
        parsed.append(index)
        index += 1
    if index < len(argv):
        parsed.append(index)
    # Later elements are the script's positional parameters, which the shell does not parse.
    return [item for item in parsed if item < len(argv)]


def check_run_commands(context: Context) -> None:
    for run in _run_steps(context):
        argv = run.args[0]
        if not argv.items:
            context.sink.error(
                "IR0605",
                "`run` has no program to execute",
                argv.span,
                label="empty argv",
                help='write the program and its arguments: `run ["kubectl", "get", "pods"]`',
            )
            continue
        program = argv.items[0]
        if has_template(program.value):
            context.sink.error(
                "IR0606",
                "the program of `run` is a template",
                program.span,
                label="alert data would choose the program",
                help="write the program in the rules and pass values as later arguments",
            )
        _check_arguments(context, argv.items)


def _run_steps(context: Context) -> Iterator[ast.StepKind]:
    for runbook in context.symbols.runbooks.values():
        for step in written_steps(runbook):
            yield from _runs(step_items(step))
    for action in context.symbols.actions.values():
        yield from _runs(action.items)


def _runs(items: list[object]) -> Iterator[ast.StepKind]:
    for item in items:
        if isinstance(item, ast.StepKind) and item.kind == "run" and item.args and isinstance(item.args[0], ast.StrList):
            yield item


def _check_arguments(context: Context, items: list[ast.Str]) -> None:
    values = [item.value for item in items]
    shell = shell_parsed(values)
    parsed = set(shell[1]) if shell else set()
    for index, item in enumerate(items):
        if index == 0 or not has_template(item.value) or looks_like_json(item.value):
            continue  # the program is reported above, JSON by `check_json_strings`
        if index in parsed:
            assert shell is not None, "parsed indices come from a shell"
            _report_shell(context, item, items[shell[0]])
            continue
        quoted = quoted_tag(item.value)
        if quoted is not None:
            context.sink.error(
                "IR0603",
                "template value inside quotes in an argument",
                value_span(context, item, *quoted),
                label="the program receives these quotes too",
                help="remove the inner quotes, because `run` uses no shell and passes each element as one argument, as written",
            )


def _report_shell(context: Context, item: ast.Str, shell: ast.Str) -> None:
    tag = next(TAG.finditer(item.value))
    name = program_name(shell.value)
    help_text = "run the program directly, without a shell, so that the value stays one argument"
    if name in _POSIX_SHELLS:
        help_text += ', or pass the value after the script, as in `["sh", "-c", "kill \\"$1\\"", "sh", "{{ label.pid }}"]`'
    context.sink.error(
        "IR0602",
        f"template value in a command that `{name}` parses",
        value_span(context, item, tag.start(), tag.end()),
        label="a shell parses the inserted value",
        labels=(Label(shell.span, f"`{name}` runs the text as shell code"),),
        help=help_text,
    )


def quoted_tag(value: str) -> tuple[int, int] | None:
    """Return the range of the first template tag that sits inside quotes within `value`."""
    quote = None
    position = 0
    while position < len(value):
        tag = TAG.match(value, position)
        if tag is not None and tag.group().startswith(("{{", "{%")):
            if quote is not None:
                return tag.start(), tag.end()
            position = tag.end()
            continue
        char = value[position]
        if char in "'\"" and quote in (None, char):
            quote = None if quote == char else char
        position += 1
    return None


# ---------------------------------------------------------------- JSON built as text


def looks_like_json(value: str) -> bool:
    """Return whether `value` reads as a JSON object or array, rather than starting with a template tag."""
    text = value.lstrip()
    return text[:1] in ("{", "[") and not text.startswith(("{{", "{%", "{#")) and '"' in text


def json_string_tag(value: str) -> tuple[int, int] | None:
    """Return the range of the first template tag inside a JSON string literal of `value`."""
    in_string = False
    position = 0
    while position < len(value):
        tag = TAG.match(value, position)
        if tag is not None:
            if in_string and tag.group().startswith(("{{", "{%")):
                return tag.start(), tag.end()
            position = tag.end()
            continue
        char = value[position]
        if in_string and char == "\\":
            position += 2
            continue
        if char == '"':
            in_string = not in_string
        position += 1
    return None


def check_json_strings(context: Context) -> None:
    for found in template_strings(context):
        string = found.string
        if not looks_like_json(string.value):
            continue
        tag = json_string_tag(string.value)
        if tag is None:
            continue
        context.sink.error(
            "IR0604",
            f"template value inside a JSON string in {found.where}",
            value_span(context, string, *tag),
            label="a quote or backslash in the value would break the JSON",
            help=_tojson_help(string.value[tag[0] : tag[1]]),
        )


def _tojson_help(tag: str) -> str:
    if not tag.startswith("{{"):
        return "build the value outside the JSON text and insert it with `{{ value | tojson }}`, without quotes around it"
    inner = re.sub(r"\s*\|\s*tojson\s*$", "", tag.removeprefix("{{").removesuffix("}}").strip("- "))
    return f"remove the quotes around the value and write `{{{{ {inner} | tojson }}}}`, which encodes it as JSON"


CHECKS = [check_auto_runbook_approvals, check_run_commands, check_json_strings]
