"""Expressions: their types, checked when the rules compile, and their evaluation on alert data.

An expression is written in a `when` condition, a severity rule, a source
mapping or a `set` step. `check_expr` gives it a type and reports misuse
(unknown fields, comparisons of unrelated types, invalid patterns) with the
roots that the place allows, described by a `Scope`. `evaluate` runs a checked
expression on a plain dict tree of data with our own small interpreter:

    values = {"labels": {"severity": "critical"}, "incident": {"age": 600}}
    evaluate(condition, values)

Data never becomes code: regular expressions come only from string literals
of the rules (compiled with RE2, anchored like Alertmanager's), and a
missing or odd value makes a comparison false rather than raising. The
diagnostic codes (IR07xx) are explained in `compiler.checks.expressions`.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import re2

from compiler import ast
from compiler.diagnostics import DiagnosticSink, Label
from compiler.suggest import closest

# ---------------------------------------------------------------- types


@dataclass(frozen=True, slots=True)
class Type:
    """The static type of an expression. `choices` lists the allowed values of an enumerated string."""

    name: str
    choices: tuple[str, ...] = ()
    choice_name: str = "value"

    def __str__(self) -> str:
        return self.name


STRING = Type("string")
INT = Type("int")
NUMBER = Type("number")
DURATION = Type("duration")
PERCENT = Type("percent")
BOOL = Type("bool")
LIST = Type("list")
ANY = Type("any")
# The type of an expression that already has an error: compatible with everything, so one
# mistake is reported once.
INVALID = Type("invalid")

SEVERITY_LEVELS = ("critical", "high", "medium", "low")
INCIDENT_STATUSES = ("detected", "triaged", "investigating", "mitigating", "resolved", "closed")
ALERT_STATUSES = ("firing", "resolved")

SEVERITY = Type("severity", SEVERITY_LEVELS, "severity level")
INCIDENT_STATUS = Type("string", INCIDENT_STATUSES, "incident status")
ALERT_STATUS = Type("string", ALERT_STATUSES, "alert status")

_NUMERIC = {"int", "number", "percent"}
_STRING_LIKE = {"string", "severity"}
_UNCHECKED = {"any", "invalid"}

# Declared parameter types of an action, by the name written in `name: type`.
PARAM_TYPES = {"string": STRING, "int": INT, "number": NUMBER, "duration": DURATION, "percent": PERCENT, "bool": BOOL}

# ---------------------------------------------------------------- roots and fields

# Spellings of each root: `label.x` and `labels.x` read the same field.
ROOT_ALIASES = {
    "label": "label",
    "labels": "label",
    "annotation": "annotation",
    "annotations": "annotation",
    "alert": "alert",
    "incident": "incident",
    "service": "service",
    "steps": "steps",
    "step": "steps",
    "body": "body",
}
ALERT_FIELDS = {
    "name": STRING,
    "status": ALERT_STATUS,
    "source": STRING,
    "fingerprint": STRING,
    "starts_at": STRING,
}
INCIDENT_FIELDS = {
    "severity": SEVERITY,
    "status": INCIDENT_STATUS,
    "age": DURATION,
    "alert_count": INT,
    "title": STRING,
    "id": STRING,
    "team": STRING,
    "service": STRING,
}
SERVICE_FIELDS = {"tier": INT, "name": STRING, "team": STRING}
# Typed outputs of a step. Any other field of a step's output is dynamic data.
STEP_FIELDS = {"ok": BOOL, "output": STRING, "value": NUMBER, "exit_code": INT, "status_code": INT}
_RECORD_FIELDS = {"alert": ALERT_FIELDS, "incident": INCIDENT_FIELDS, "service": SERVICE_FIELDS}
# Keys of the `values` tree that `evaluate` reads, by root.
_DATA_KEYS = {
    "label": "labels",
    "annotation": "annotations",
    **{root: root for root in ("alert", "incident", "service", "steps", "body")},
}

# Fields that a `set` step may change, with the type of the value.
SETTABLE_FIELDS = {"status": INCIDENT_STATUS, "severity": SEVERITY, "title": STRING}


@dataclass(frozen=True, slots=True)
class Scope:
    """The place of an expression: the roots it may read and the parameters in reach."""

    where: str
    roots: frozenset[str]
    params: Mapping[str, Type] = field(default_factory=dict)
    in_action: bool = False


_ALERT_ROOTS = frozenset({"label", "annotation", "alert", "service"})
SEVERITY_SCOPE = Scope("a severity rule", _ALERT_ROOTS)
GROUPING_SCOPE = Scope("a grouping condition", _ALERT_ROOTS)
RUNBOOK_SCOPE = Scope("a runbook trigger", _ALERT_ROOTS | {"incident"})
PAGERDUTY_SCOPE = Scope("a pagerduty rule", _ALERT_ROOTS | {"incident"})
STEP_SCOPE = Scope("a step", _ALERT_ROOTS | {"incident", "steps"})
SOURCE_SCOPE = Scope("a source", frozenset({"body"}))


def action_scope(params: Mapping[str, Type]) -> Scope:
    """Return the scope of an action body: the incident's data and the action's parameters."""
    return Scope("an action", _ALERT_ROOTS | {"incident"}, params, in_action=True)


def param_type(declared: str) -> Type:
    """Return the type of a parameter declared as `name: declared`, or `ANY` for an unknown type name."""
    return PARAM_TYPES.get(declared, ANY)


# ---------------------------------------------------------------- checking


def check_expr(expr: ast.Expr, scope: Scope, sink: DiagnosticSink) -> Type:
    """Type `expr` in `scope`, report misuse to `sink`, and return its type (`INVALID` after an error)."""
    return _Checker(scope, sink).type_of(expr)


def check_condition(expr: ast.Expr, scope: Scope, sink: DiagnosticSink) -> Type:
    """Check `expr` like `check_expr` and require it to be true or false."""
    checker = _Checker(scope, sink)
    found = checker.type_of(expr)
    checker.require_bool(expr, found, f"a condition in {scope.where}")
    return found


def check_choice(expected: Type, literal: ast.Str, sink: DiagnosticSink) -> bool:
    """Report `literal` when `expected` is an enumerated type that does not allow its value."""
    if not expected.choices or literal.value in expected.choices:
        return True
    what = expected.choice_name
    suggestion = closest(literal.value, expected.choices)
    sink.error(
        "IR0709",
        f"unknown {what} `{literal.value}`",
        literal.span,
        label=f"not a valid {what}",
        help=f"{_article(what)} {what} with a similar name exists: `{suggestion}`"
        if suggestion
        else f"write {_listed(expected.choices, 'or')}",
    )
    return False


def anchored(pattern: str) -> str:
    """Return `pattern` anchored at both ends, as Alertmanager anchors its matchers."""
    return f"^(?:{pattern})$"


def regex_error(pattern: str) -> str | None:
    """Return RE2's reason for rejecting `pattern`, or `None` when it compiles."""
    try:
        re2.compile(anchored(pattern), options=_re2_options())
    except re2.error as error:
        reason = error.args[0].decode("utf-8", "replace") if error.args and isinstance(error.args[0], bytes) else str(error)
        return reason.split(": ", 1)[0]
    return None


class _Checker:
    def __init__(self, scope: Scope, sink: DiagnosticSink) -> None:
        self.scope = scope
        self.sink = sink

    def type_of(self, expr: ast.Expr) -> Type:
        if isinstance(expr, ast.Path):
            return self.path_type(expr)
        if isinstance(expr, ast.Compare):
            return self.compare_type(expr)
        if isinstance(expr, ast.BoolOp):
            for item in expr.items:
                self.require_bool(item, self.type_of(item), f"`{expr.op}`")
            return BOOL
        if isinstance(expr, ast.Not):
            self.require_bool(expr.item, self.type_of(expr.item), "`not`")
            return BOOL
        if isinstance(expr, ast.ListExpr):
            for item in expr.items:
                self.type_of(item)
            return LIST
        return literal_type(expr)

    def require_bool(self, expr: ast.Expr, found: Type, what: str) -> None:
        if found is BOOL or found.name in _UNCHECKED:
            return
        help_text = 'compare the value, for example `label.team == "db"`'
        if isinstance(expr, ast.Path) and found.name in _STRING_LIKE:
            help_text = f'test that the value is set with `{_path_text(expr)} != ""`, or compare it with a value'
        self.sink.error(
            "IR0708",
            f"{what} needs true or false, found {_a(found)}",
            expr.span,
            label=f"this is {_a(found)}",
            help=help_text,
        )

    # ------------------------------------------------------------ paths

    def path_type(self, path: ast.Path) -> Type:
        parts = path.parts
        first = parts[0]
        if len(parts) == 1:
            if first in self.scope.params:
                return self.scope.params[first]
            if first == "body" and "body" in self.scope.roots:
                return ANY
            # A bare name is a label: `alertname == "X"` reads `label.alertname`.
            return STRING if self.available("label", path, 0) else INVALID
        root = ROOT_ALIASES.get(first)
        if root is None:
            return self.unknown_root(path)
        if not self.available(root, path, 0):
            return INVALID
        if root in ("label", "annotation"):
            return self.leaf(path, 2, STRING, f"`{first}.{parts[1]}` is a string")
        if root == "steps":
            return self.step_type(path)
        if root == "body":
            return ANY
        fields = _RECORD_FIELDS[root]
        found = fields.get(parts[1])
        if found is None:
            return self.unknown_field(path, 1, root, fields)
        return self.leaf(path, 2, found, f"`{first}.{parts[1]}` is {_a(found)}")

    def available(self, root: str, path: ast.Path, index: int) -> bool:
        if root in self.scope.roots:
            return True
        where = self.scope.where
        label = "not available here"
        if root == "label" and len(path.parts) == 1:
            label = "a bare name reads a label, and labels are not available here"
        if self.scope.roots == {"body"}:
            help_text = f"{where} reads only the JSON payload: write `body.{path.parts[-1]}`"
        elif root == "steps" and self.scope.in_action:
            help_text = "pass the value to the action as an argument, because an action cannot see the runbook's steps"
        else:
            help_text = f"{where} can read {_listed(name for name in _ROOT_ORDER if name in self.scope.roots)}"
        self.sink.error(
            "IR0702", f"`{path.parts[0]}` is not available in {where}", path.part_spans[index], label=label, help=help_text
        )
        return False

    def unknown_root(self, path: ast.Path) -> Type:
        first = path.parts[0]
        known = [name for name in ROOT_ALIASES if ROOT_ALIASES[name] in self.scope.roots]
        if first in self.scope.params:
            return self.leaf(path, 1, self.scope.params[first], f"parameter `{first}` is {_a(self.scope.params[first])}")
        suggestion = closest(first, known + list(self.scope.params))
        readable = _listed(name for name in _ROOT_ORDER if name in self.scope.roots)
        self.sink.error(
            "IR0701",
            f"unknown name `{first}`",
            path.part_spans[0],
            label="not a root of an expression",
            help=f"a name with a similar spelling exists: `{suggestion}`"
            if suggestion
            else f"expressions here start with {readable}",
        )
        return INVALID

    def unknown_field(self, path: ast.Path, index: int, owner: str, fields: Mapping[str, Type]) -> Type:
        name = path.parts[index]
        suggestion = closest(name, fields)
        self.sink.error(
            "IR0701",
            f"unknown field `{name}` of `{owner}`",
            path.part_spans[index],
            label=f"`{owner}` has no such field",
            help=f"a field with a similar name exists: `{suggestion}`"
            if suggestion
            else f"`{owner}` has the fields {_listed(fields)}",
        )
        return INVALID

    def leaf(self, path: ast.Path, length: int, found: Type, what: str) -> Type:
        """Return `found` when `path` ends after `length` parts, or report the first extra part."""
        if len(path.parts) <= length:
            return found
        extra = path.parts[length]
        help_text = f"{what} and has no fields"
        if ROOT_ALIASES.get(path.parts[0]) in ("label", "annotation"):
            dotted = ".".join(path.parts[1:])
            help_text = f'{what}, and a name that contains dots is written `{path.parts[0]}["{dotted}"]`'
        self.sink.error(
            "IR0701",
            f"`{_path_text(path, length)}` has no field `{extra}`",
            path.part_spans[length].to(path.part_spans[-1]),
            label="no such field",
            help=help_text,
        )
        return INVALID

    def step_type(self, path: ast.Path) -> Type:
        parts = path.parts
        if len(parts) < 3:
            # A one-part `steps` is a bare label, so the path here is `steps.NAME`.
            others = _listed(list(STEP_FIELDS)[1:], "or")
            self.sink.error(
                "IR0712",
                f"`{_path_text(path)}` names a step but no field of it",
                path.span,
                label="a field is missing after this",
                help=f"read a field of the step, such as `steps.{parts[1]}.ok`, or {others}",
            )
            return INVALID
        found = STEP_FIELDS.get(parts[2])
        if found is None:
            return ANY  # a field of the step's JSON output
        return self.leaf(path, 3, found, f"`{_path_text(path, 3)}` is {_a(found)}")

    # ------------------------------------------------------------ comparisons

    def compare_type(self, node: ast.Compare) -> Type:
        left = self.type_of(node.left)
        if node.op in ("=~", "!~"):
            self.check_match(node, left)
            return BOOL
        right = self.type_of(node.right)
        if left is INVALID or right is INVALID:
            return BOOL
        if self.bare_level(node, left, right):
            return BOOL
        if node.op in ("==", "!="):
            self.check_equality(node, left, right)
        elif node.op in ("<", "<=", ">", ">="):
            self.check_ordering(node, left, right)
        else:
            self.check_membership(node, left, right)
        return BOOL

    def bare_level(self, node: ast.Compare, left: Type, right: Type) -> bool:
        """Report `incident.severity >= high`: a bare `high` reads the label `high`, not the level."""
        for found, other, other_type in ((left, node.right, right), (right, node.left, left)):
            if found is not SEVERITY or other_type is SEVERITY:
                continue
            if isinstance(other, ast.Path) and len(other.parts) == 1 and other.parts[0] in SEVERITY_LEVELS:
                level = other.parts[0]
                self.sink.error(
                    "IR0714",
                    f"`{level}` reads the label `{level}`, not the severity level",
                    other.span,
                    label="a bare name is a label",
                    help=f'write the level as a string: `"{level}"`',
                )
                return True
        return False

    def check_equality(self, node: ast.Compare, left: Type, right: Type) -> None:
        if LIST in (left, right):
            listed = node.right if right is LIST else node.left
            self.sink.error(
                "IR0703",
                f"`{node.op}` cannot compare with a list",
                listed.span,
                label="this is a list",
                help='test membership with `in`: `label.env in ["prod", "staging"]`',
            )
            return
        if not _comparable(left, right):
            self.mismatch(node, left, right)
            return
        self.check_choices(node, left, right)

    def check_ordering(self, node: ast.Compare, left: Type, right: Type) -> None:
        for side, found, other in ((node.left, left, right), (node.right, right, left)):
            # A plain string orders against a severity as a level: `"high"`, or `label.severity`.
            if _orderable(found) or (found is STRING and other is SEVERITY):
                continue
            self.sink.error(
                "IR0704",
                f"`{node.op}` cannot order {_plural(found)}",
                side.span,
                label=f"this is {_a(found)}",
                help="`<`, `<=`, `>` and `>=` compare numbers, percentages, durations and severity levels",
            )
            return
        if not _comparable(left, right):
            self.mismatch(node, left, right)
            return
        self.check_choices(node, left, right)

    def check_match(self, node: ast.Compare, left: Type) -> None:
        if left.name not in _STRING_LIKE and left.name not in _UNCHECKED:
            # The pattern is still checked below, so both mistakes show at once.
            self.sink.error(
                "IR0705",
                f"`{node.op}` needs a string on the left, found {_a(left)}",
                node.left.span,
                label=f"this is {_a(left)}",
                help="patterns match strings, so compare numbers with `==`, `<` or `>`",
            )
        if not isinstance(node.right, ast.Str):
            self.type_of(node.right)
            self.sink.error(
                "IR0705",
                f"the pattern of `{node.op}` must be a string literal",
                node.right.span,
                label="not a string literal",
                help='write the regular expression as a string literal, such as `label.pod =~ "api-.*"`, because alert data never becomes a pattern',
            )
            return
        reason = regex_error(node.right.value)
        if reason is not None:
            self.sink.error(
                "IR0706",
                f"invalid regular expression: {reason}",
                node.right.span,
                label="RE2 rejects this pattern",
                help="patterns use RE2 syntax, without lookaround or backreferences, and match the whole value",
            )

    def check_membership(self, node: ast.Compare, left: Type, right: Type) -> None:
        if left is LIST:
            self.sink.error(
                "IR0707",
                f"`{node.op}` needs a single value on the left, found a list",
                node.left.span,
                label="this is a list",
                help="`x in [a, b]` tests whether `x` equals one of the items",
            )
            return
        if right.name in _UNCHECKED:
            return
        if right.name in _STRING_LIKE:
            if left.name not in _STRING_LIKE and left.name not in _UNCHECKED:
                self.sink.error(
                    "IR0707",
                    f"`{node.op}` with a string on the right needs a string on the left, found {_a(left)}",
                    node.left.span,
                    label=f"this is {_a(left)}",
                    help="`x in s` tests whether the string `s` contains the string `x`",
                )
            return
        if right is not LIST:
            self.sink.error(
                "IR0707",
                f"`{node.op}` needs a list or a string on the right, found {_a(right)}",
                node.right.span,
                label=f"this is {_a(right)}",
                help='write the choices as a list: `label.env in ["prod", "staging"]`',
            )
            return
        if isinstance(node.right, ast.ListExpr):
            for item in node.right.items:
                self.check_item(node, left, item)

    def check_item(self, node: ast.Compare, left: Type, item: ast.Expr) -> None:
        found = self.item_type(item)
        if found is INVALID or found.name in _UNCHECKED:
            return
        if not _comparable(left, found):
            self.sink.error(
                "IR0707",
                f"list item is {_a(found)}, but the value tested with `{node.op}` is {_a(left)}",
                item.span,
                label=f"this is {_a(found)}",
                labels=(Label(node.left.span, f"this is {_a(left)}"),),
                help=_mismatch_help(left, found),
            )
        elif isinstance(item, ast.Str):
            check_choice(left, item, self.sink)

    def item_type(self, item: ast.Expr) -> Type:
        # The items were typed, and their errors reported, with the list, so this pass reports nothing.
        return _Checker(self.scope, DiagnosticSink()).type_of(item)

    def check_choices(self, node: ast.Compare, left: Type, right: Type) -> None:
        if isinstance(node.right, ast.Str):
            check_choice(left, node.right, self.sink)
        if isinstance(node.left, ast.Str):
            check_choice(right, node.left, self.sink)

    def mismatch(self, node: ast.Compare, left: Type, right: Type) -> None:
        # Blame the literal when there is one: the user wrote it to fit the field.
        if _is_literal(node.left) and not _is_literal(node.right):
            blamed, other, blamed_type, other_type = node.left, node.right, left, right
        else:
            blamed, other, blamed_type, other_type = node.right, node.left, right, left
        self.sink.error(
            "IR0703",
            f"`{node.op}` cannot compare {_a(other_type)} with {_a(blamed_type)}",
            blamed.span,
            label=f"this is {_a(blamed_type)}",
            labels=(Label(other.span, f"this is {_a(other_type)}"),),
            help=_mismatch_help(other_type, blamed_type),
        )


_ROOT_ORDER = ("label", "annotation", "alert", "incident", "service", "steps", "body")


def literal_type(expr: ast.Expr) -> Type:
    if isinstance(expr, ast.Str):
        return STRING
    if isinstance(expr, ast.Bool):
        return BOOL
    if isinstance(expr, ast.Int):
        return INT
    if isinstance(expr, ast.Number):
        return NUMBER
    if isinstance(expr, ast.Duration):
        return DURATION
    if isinstance(expr, ast.Percent):
        return PERCENT
    raise AssertionError(f"the grammar produces no expression node {type(expr).__name__}")


def _family(found: Type) -> str:
    if found.name in _NUMERIC:
        return "number"
    return found.name


def _comparable(left: Type, right: Type) -> bool:
    if left.name in _UNCHECKED or right.name in _UNCHECKED:
        return True
    if {left.name, right.name} <= _STRING_LIKE:
        return True
    return _family(left) == _family(right)


def _orderable(found: Type) -> bool:
    return found.name in _NUMERIC or found.name in ("duration", "severity") or found.name in _UNCHECKED


def _is_literal(expr: ast.Expr) -> bool:
    return isinstance(expr, (ast.Str, ast.Int, ast.Number, ast.Duration, ast.Percent, ast.Bool))


def _mismatch_help(expected: Type, found: Type) -> str:
    if expected.name in _STRING_LIKE and found.name in _NUMERIC:
        return 'label and annotation values are strings, so write the number in quotes, such as `"3"`'
    if expected.name in _NUMERIC and found.name in _STRING_LIKE:
        return "write the number without quotes, such as `1`"
    if expected is DURATION:
        return "write a duration with its unit, such as `90s` or `10m`"
    if found is DURATION:
        return "durations compare only with durations"
    if expected is BOOL:
        return "compare with `true` or `false`"
    return "both sides of a comparison must have the same type"


def _listed(names: Iterable[str], conjunction: str = "and") -> str:
    quoted = [f"`{name}`" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" {conjunction} " + quoted[-1]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _a(found: Type) -> str:
    return f"{_article(found.name)} {found.name}"


def _plural(found: Type) -> str:
    return "booleans" if found is BOOL else f"{found.name}s"


def _path_text(path: ast.Path, length: int | None = None) -> str:
    return ".".join(path.parts[:length])


@functools.cache
def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print to stderr, and the diagnostic carries the reason already
    return options


# ---------------------------------------------------------------- `set` steps


def set_literal(target: ast.Path, value: ast.Expr) -> str | None:
    """Return the choice that a bare name stands for in `set incident.status = mitigating`.

    A bare name elsewhere reads a label, but as the value of an enumerated field
    it is the choice of that name. Returns `None` when `value` is not such a name.
    """
    if len(target.parts) != 2 or not isinstance(value, ast.Path) or len(value.parts) != 1:
        return None
    expected = SETTABLE_FIELDS.get(target.parts[1])
    if expected is None or not expected.choices:
        return None
    return value.parts[0]


# ---------------------------------------------------------------- evaluation


class _Missing:
    """A field absent from the data: every comparison with it is false, except `!=`, `!~` and `not in`."""

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()

_SEVERITY_RANK = {level: rank for rank, level in enumerate(reversed(SEVERITY_LEVELS))}
_MAX_NUMBER_TEXT = 64
_NUMBER_TEXT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_PERCENT_TEXT = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+))%")
_DURATION_TEXT = re.compile(r"(?:\d+(?:ms|s|m|h|d|w))+")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_INDEX_DIGITS = 9


def evaluate(expr: ast.Expr, values: Mapping[str, object]) -> object:
    """Return the value of `expr` on `values`, where a missing field evaluates to `MISSING`.

    `values` is a plain tree with the keys `labels`, `annotations`, `alert`,
    `incident`, `service`, `steps`, `body` and `params`, each one optional.
    Durations in the data are seconds or `datetime.timedelta`. Never raises on
    odd data: a value of the wrong kind makes its comparison false.

    Example:
        evaluate(condition, {"labels": {"severity": "critical"}, "service": {"tier": 1}})
    """
    if isinstance(expr, ast.Path):
        return _lookup(expr.parts, values)
    if isinstance(expr, ast.Compare):
        return _compare(expr, evaluate(expr.left, values), values)
    if isinstance(expr, ast.BoolOp):
        if expr.op == "and":
            return all(is_true(evaluate(item, values)) for item in expr.items)
        return any(is_true(evaluate(item, values)) for item in expr.items)
    if isinstance(expr, ast.Not):
        return not is_true(evaluate(expr.item, values))
    if isinstance(expr, ast.ListExpr):
        return [evaluate(item, values) for item in expr.items]
    if isinstance(expr, ast.Percent):
        return expr.value / 100
    if isinstance(expr, ast.Duration):
        return datetime.timedelta(seconds=expr.seconds)
    return expr.value


def evaluate_condition(expr: ast.Expr, values: Mapping[str, object]) -> bool:
    """Return whether the condition `expr` holds on `values`."""
    return is_true(evaluate(expr, values))


def is_true(value: object) -> bool:
    """Return whether a value counts as true: `True` itself or the string `true` in any case."""
    if isinstance(value, str):
        return value.lower() == "true"
    return value is True


def _lookup(parts: list[str], values: Mapping[str, object]) -> object:
    if len(parts) == 1:
        params = values.get("params")
        if isinstance(params, Mapping) and parts[0] in params:
            return _present(params[parts[0]])
        return _label(values.get("labels"), parts[0])
    root = ROOT_ALIASES.get(parts[0])
    if root is None:
        return MISSING
    data = values.get(_DATA_KEYS[root])
    if root in ("label", "annotation"):
        return _label(data, parts[1]) if len(parts) == 2 else MISSING
    current = _present(data)
    for part in parts[1:]:
        current = _child(current, part)
        if current is MISSING:
            break
    return current


def _label(labels: object, name: str) -> object:
    """Return a label or annotation value, or the empty string for an absent one, as in Prometheus."""
    if not isinstance(labels, Mapping):
        return ""
    value = labels.get(name)
    return "" if value is None else value


def _child(current: object, part: str) -> object:
    if isinstance(current, Mapping):
        return _present(current.get(part, MISSING))
    if isinstance(current, (list, tuple)) and part.isascii() and part.isdigit() and len(part) <= _MAX_INDEX_DIGITS:
        index = int(part)
        return _present(current[index]) if index < len(current) else MISSING
    return MISSING


def _present(value: object) -> object:
    return MISSING if value is None else value


def _compare(node: ast.Compare, left: object, values: Mapping[str, object]) -> bool:
    if node.op in ("=~", "!~"):
        # Only a literal of the rules is ever compiled, and the checker rejects any other pattern.
        pattern = node.right.value if isinstance(node.right, ast.Str) else None
        return compare(node.op, left, pattern)
    return compare(node.op, left, evaluate(node.right, values))


def lookup(parts: list[str], values: Mapping[str, object]) -> object:
    """Return the value that the path `parts` reads from `values`, or `MISSING`, as `evaluate` does."""
    return _lookup(parts, values)


def compare(op: str, left: object, right: object) -> bool:
    """Return whether `left op right` is true, with the rules of `evaluate`.

    For `=~` and `!~`, `right` is the pattern text from the rules, or `None`
    when there is no literal pattern (which never matches).
    """
    if op in ("=~", "!~"):
        matched = _matches(left, right if isinstance(right, str) else None)
        return matched if op == "=~" else not matched
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op == "in":
        return _contains(right, left)
    if op == "not in":
        return not _contains(right, left)
    order = _order(left, right)
    if order is None:
        return False
    return {"<": order < 0, "<=": order <= 0, ">": order > 0, ">=": order >= 0}[op]


def _equal(left: object, right: object) -> bool:
    if left is MISSING or right is MISSING:
        return False
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    left_number, right_number = _number(left), _number(right)
    if left_number is not None and right_number is not None:
        return left_number == right_number
    if isinstance(left, (Mapping, list, tuple)) and type(left) is type(right):
        try:
            return left == right
        except RecursionError:
            return False  # data nested deeper than Python compares
    return False


def _order(left: object, right: object) -> int | None:
    """Return the sign of `left - right`, or `None` when the two have no order."""
    if isinstance(left, str) and isinstance(right, str) and left in _SEVERITY_RANK and right in _SEVERITY_RANK:
        return _SEVERITY_RANK[left] - _SEVERITY_RANK[right]
    left_number, right_number = _number(left), _number(right)
    if left_number is None or right_number is None:
        return None
    if left_number != left_number or right_number != right_number:
        return None  # NaN has no order
    return (left_number > right_number) - (left_number < right_number)


def _number(value: object) -> int | float | None:
    """Return `value` as a number: durations in seconds, percentages as fractions, numeric text parsed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if not isinstance(value, str) or len(value) > _MAX_NUMBER_TEXT:
        return None
    text = value.strip()
    if _NUMBER_TEXT.fullmatch(text):
        return float(text)
    percent = _PERCENT_TEXT.fullmatch(text)
    if percent:
        return float(percent.group(1)) / 100
    if _DURATION_TEXT.fullmatch(text):
        return sum(int(count) * _UNIT_SECONDS[unit] for count, unit in _DURATION_PART.findall(text))
    return None


def _contains(container: object, item: object) -> bool:
    if item is MISSING:
        return False
    if isinstance(container, (list, tuple)):
        return any(_equal(item, candidate) for candidate in container)
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container
    return False


def _matches(subject: object, pattern: str | None) -> bool:
    if pattern is None:
        return False
    if isinstance(subject, (int, float)) and not isinstance(subject, bool):
        subject = str(subject)
    if not isinstance(subject, str):
        return False
    compiled = _compiled(pattern)
    return compiled is not None and compiled.search(subject) is not None


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re2._Regexp | None:
    try:
        return re2.compile(anchored(pattern), options=_re2_options())
    except re2.error:
        return None
