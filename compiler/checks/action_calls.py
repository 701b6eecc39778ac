"""Action checks: parameter declarations of `action` and the calls of actions in runbook steps.

- Parameter types are `string` (a string or a bare word), `int`, `number`
  (an int or a decimal), `duration`, `percent` and `bool`. Parameter names
  are unique within an action. A parameter without a default is required.
- `matching "REGEX"` restricts a parameter to values that the RE2 regular
  expression matches as a whole (it is anchored at both ends). A default
  has the parameter's type and matches its pattern.
- A call passes every required parameter, by position (in the order the
  parameters are declared) or as `name=value`, and no parameter twice.
  Literal arguments have the parameter's type and match its pattern. The
  pattern is matched against a string's value, and against other literals
  as written (`30s`, `90%`, `true`).
- Arguments containing `{{` are templates, filled in and checked at run
  time, and so are defaults containing `{{`.
- Calls of undeclared actions are reported by `compiler.checks.names`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import re2

from compiler import ast
from compiler.checks.context import Context
from compiler.codes import Code
from compiler.diagnostics import Label
from compiler.stepgraph import step_items, written_steps
from compiler.suggest import closest

PARAM_TYPES = ("string", "int", "number", "duration", "percent", "bool")
_TYPE_EXAMPLES = {
    "string": '"text"',
    "int": "3",
    "number": "0.5",
    "duration": "30s",
    "percent": "90%",
    "bool": "true",
}


def project_runbooks(context: Context) -> Iterator[ast.Runbook]:
    """Yield the runbooks of the user's files, not the standard library's."""
    for decl in context.project_decls():
        if isinstance(decl, ast.Runbook):
            yield decl


def quoted_list(names: list[str]) -> str:
    """Return "`a`, `b` and `c`"."""
    quoted = [f"`{name}`" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


# ---------------------------------------------------------------- action calls


def check_action_calls(context: Context) -> None:
    for runbook in project_runbooks(context):
        for step in written_steps(runbook):
            for item in step_items(step):
                action = context.symbols.actions.get(item.action.value) if isinstance(item, ast.ActionCall) else None
                if action is not None:
                    _check_call(context, item, action)


def _call_args(call: ast.ActionCall) -> list[ast.CallArg]:
    # The parser inlines a positional literal argument; wrap it like the others.
    return [arg if isinstance(arg, ast.CallArg) else ast.CallArg(span=arg.span, name=None, value=arg) for arg in call.args]


def _check_call(context: Context, call: ast.ActionCall, action: ast.Action) -> None:
    params = _unique_params(action)
    by_name = {param.name.value: param for param in params}
    bound: dict[str, ast.CallArg] = {}
    position = 0
    for arg in _call_args(call):
        if arg.name is None and position >= len(params):
            _too_many_arguments(context, action, arg, len(params))
            return
        if arg.name is None:
            param = params[position]
            position += 1
        else:
            param = by_name.get(arg.name.value)
            if param is None:
                _unknown_argument(context, action, arg.name, list(by_name))
                continue
        if param.name.value in bound:
            _argument_twice(context, param, arg, bound[param.name.value])
            continue
        bound[param.name.value] = arg
        _check_argument(context, action, param, arg.value)

    missing = [param for param in params if param.default is None and param.name.value not in bound]
    if missing:
        _missing_arguments(context, call, action, missing)


def _unique_params(action: ast.Action) -> list[ast.Param]:
    seen: dict[str, ast.Param] = {}
    for param in action.params:
        seen.setdefault(param.name.value, param)
    return list(seen.values())


def _too_many_arguments(context: Context, action: ast.Action, arg: ast.CallArg, count: int) -> None:
    context.sink.error(
        "IR0513",
        f"too many arguments in call of action `{action.name.value}`",
        arg.span,
        label="extra argument",
        labels=(Label(action.name.span, f"takes {count} argument{'' if count == 1 else 's'}"),),
        help="remove the extra arguments",
    )


def _missing_arguments(context: Context, call: ast.ActionCall, action: ast.Action, missing: list[ast.Param]) -> None:
    names = [param.name.value for param in missing]
    noun = "argument" if len(names) == 1 else "arguments"
    context.sink.error(
        "IR0513",
        f"call of action `{action.name.value}` is missing the {noun} {quoted_list(names)}",
        call.action.span,
        label=f"missing {quoted_list(names)}",
        labels=tuple(Label(param.name.span, "parameter without a default") for param in missing),
        help=f"pass each parameter without a default, by position or as `{names[0]}=...`",
    )


def _unknown_argument(context: Context, action: ast.Action, name: ast.Name, known: list[str]) -> None:
    suggestion = closest(name.value, known)
    if suggestion:
        help_text = f"a parameter with a similar name exists: `{suggestion}`"
    elif known:
        help_text = f"action `{action.name.value}` has the parameters {quoted_list(known)}"
    else:
        help_text = f"action `{action.name.value}` takes no arguments"
    context.sink.error(
        "IR0514",
        f"action `{action.name.value}` has no parameter `{name.value}`",
        name.span,
        label="unknown parameter",
        help=help_text,
    )


def _argument_twice(context: Context, param: ast.Param, arg: ast.CallArg, first: ast.CallArg) -> None:
    context.sink.error(
        "IR0515",
        f"argument `{param.name.value}` is given twice",
        arg.span,
        label="given again here",
        labels=(Label(first.span, "first given here"),),
        help="remove one of them; positional arguments fill the parameters in the order they are declared",
    )


def _matches_pattern(param: ast.Param, value: object) -> bool:
    """Tell whether a literal matches the parameter's whole `matching` pattern; true without a pattern."""
    pattern = _pattern(param.pattern.value) if param.pattern is not None else None
    return pattern is None or pattern.fullmatch(_literal_text(value)) is not None


def _check_argument(context: Context, action: ast.Action, param: ast.Param, value: object) -> None:
    if _is_template(value) or param.type.value not in PARAM_TYPES:
        return
    where = f"argument `{param.name.value}` of action `{action.name.value}`"
    if not _has_type(value, param.type.value):
        _wrong_type(context, "IR0516", where, param, value)
        return
    if not _matches_pattern(param, value):
        context.sink.error(
            "IR0517",
            f"{where} does not match the pattern `{param.pattern.value}`",
            value.span,
            label="does not match the whole pattern",
            labels=(Label(param.pattern.span, "pattern declared here"),),
            help="pass a value that matches the whole pattern; the pattern is anchored at both ends",
        )


def _wrong_type(context: Context, code: str, where: str, param: ast.Param, value: object) -> None:
    expected = param.type.value
    context.sink.error(
        code,
        f"{where} must be {_article(expected)} {expected}, not {_describe(value)}",
        value.span,
        label=f"expected {_article(expected)} {expected}",
        help=f"write {_article(expected)} {expected}, such as `{_TYPE_EXAMPLES[expected]}`",
    )


def _is_template(value: object) -> bool:
    return isinstance(value, ast.Str) and "{{" in value.value


def _has_type(value: object, type_name: str) -> bool:
    if type_name == "string":
        return isinstance(value, (ast.Str, ast.Name))
    if type_name == "number":
        return isinstance(value, (ast.Int, ast.Number))
    kinds = {"int": ast.Int, "duration": ast.Duration, "percent": ast.Percent, "bool": ast.Bool}
    return isinstance(value, kinds[type_name])


def _describe(value: object) -> str:
    if isinstance(value, ast.Name):
        return f"the bare word `{value.value}`"
    names = {
        ast.Str: "a string",
        ast.Int: "an int",
        ast.Number: "a number",
        ast.Duration: "a duration",
        ast.Percent: "a percent",
        ast.Bool: "a bool",
    }
    return names.get(type(value), "a value")


def _article(type_name: str) -> str:
    return "an" if type_name == "int" else "a"


def _literal_text(value: object) -> str:
    """Return the text a pattern is matched against: a string's value, or the literal as written."""
    if isinstance(value, (ast.Str, ast.Name)):
        return value.value
    if isinstance(value, (ast.Duration, ast.Percent, ast.Number)):
        return value.text
    if isinstance(value, ast.Bool):
        return "true" if value.value else "false"
    return str(value.value)


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> tuple[object | None, str]:
    """Compile an RE2 pattern; return it, or `None` and RE2's error message.

    Callers match with `fullmatch`, which anchors the pattern at both ends.
    """
    options = re2.Options()
    options.log_errors = False  # RE2 would print its own copy of the error on stderr
    try:
        return re2.compile(pattern, options), ""
    except re2.error as error:
        reason = error.args[0] if error.args else "invalid pattern"
        return None, reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def _pattern(pattern: str) -> object | None:
    return _compile(pattern)[0]


# ---------------------------------------------------------------- action declarations


def check_action_parameters(context: Context) -> None:
    for decl in context.project_decls():
        if isinstance(decl, ast.Action):
            first: dict[str, ast.Param] = {}
            for param in decl.params:
                earlier = first.setdefault(param.name.value, param)
                if earlier is not param:
                    _duplicate_param(context, decl, param, earlier)
                _check_param(context, decl, param)


def _duplicate_param(context: Context, action: ast.Action, param: ast.Param, earlier: ast.Param) -> None:
    context.sink.error(
        "IR0519",
        f"parameter `{param.name.value}` is declared twice in action `{action.name.value}`",
        param.name.span,
        label="declared again here",
        labels=(Label(earlier.name.span, "first declared here"),),
        help="rename or remove one of the parameters",
    )


def _check_param(context: Context, action: ast.Action, param: ast.Param) -> None:
    type_name = param.type.value
    if type_name not in PARAM_TYPES:
        suggestion = closest(type_name, PARAM_TYPES)
        context.sink.error(
            "IR0518",
            f"unknown parameter type `{type_name}`",
            param.type.span,
            label="not a parameter type",
            help=f"a type with a similar name exists: `{suggestion}`"
            if suggestion
            else f"parameter types are {quoted_list(list(PARAM_TYPES))}",
        )

    valid_pattern = True
    if param.pattern is not None:
        compiled, reason = _compile(param.pattern.value)
        valid_pattern = compiled is not None
        if not valid_pattern:
            context.sink.error(
                "IR0521",
                f"invalid regular expression in `matching`: {reason}",
                param.pattern.span,
                label="not a valid RE2 pattern",
                help="write an RE2 regular expression; RE2 has no backreferences and no lookaround",
            )

    if param.default is not None and type_name in PARAM_TYPES and valid_pattern:
        _check_default(context, action, param)


def _check_default(context: Context, action: ast.Action, param: ast.Param) -> None:
    default = param.default
    if _is_template(default):
        return
    where = f"default of parameter `{param.name.value}`"
    if not _has_type(default, param.type.value):
        _wrong_type(context, "IR0520", where, param, default)
        return
    if not _matches_pattern(param, default):
        context.sink.error(
            "IR0520",
            f"{where} does not match its pattern `{param.pattern.value}`",
            default.span,
            label="does not match the whole pattern",
            labels=(Label(param.pattern.span, "pattern declared here"),),
            help="change the default or the pattern; the pattern is anchored at both ends",
        )


CHECKS = [
    check_action_parameters,
    check_action_calls,
]

CODES = {
    "IR0513": Code(
        "wrong number of arguments",
        "An action call passes more arguments than the action has parameters, or leaves\n"
        "out a parameter without a default. Positional arguments fill the parameters in\n"
        "the order they are declared; `name=value` sets one by name.",
    ),
    "IR0514": Code(
        "unknown parameter",
        "A named argument `name=value` names no parameter of the called action.",
    ),
    "IR0515": Code(
        "argument given twice",
        "One parameter receives two values, by name twice or once by position and once by\nname.",
    ),
    "IR0516": Code(
        "argument of the wrong type",
        "A literal argument does not have the parameter's type. `string` takes a string\n"
        "or a bare word, `int` an integer, `number` an integer or decimal, `duration` a\n"
        "duration such as `30s`, `percent` a percentage such as `90%` and `bool` `true` or\n"
        "`false`. Arguments containing `{{` are templates, filled in and checked at run\n"
        "time.",
    ),
    "IR0517": Code(
        "argument does not match the parameter's pattern",
        'The parameter declares `matching "REGEX"`, an RE2 regular expression anchored at\n'
        "both ends, and a literal argument does not match it as a whole. Templates are\n"
        "checked at run time.",
    ),
    "IR0518": Code(
        "unknown parameter type",
        "Action parameters have one of the types `string`, `int`, `number`, `duration`,\n`percent` and `bool`.",
    ),
    "IR0519": Code(
        "duplicate parameter",
        "Two parameters of one action share a name, so a named argument could not tell\nthem apart.",
    ),
    "IR0520": Code(
        "invalid parameter default",
        "The default value of a parameter does not have the parameter's type, or does not\n"
        "match the parameter's `matching` pattern as a whole.",
    ),
    "IR0521": Code(
        "invalid regular expression",
        "The `matching` pattern of a parameter is not a valid RE2 regular expression. RE2\n"
        "runs in linear time and therefore has no backreferences and no lookaround.",
    ),
}
