"""Templates: every string with Jinja syntax compiles, and `template` declarations are well formed.

Strings are compiled with Jinja's sandboxed environment, as the daemon renders
them. Alert data is only ever passed as context, never compiled. A syntax
error points at the tag inside the string that causes it, down to the line
and column, escapes and block strings included.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from compiler import ast, expr
from compiler.checks.context import Context
from compiler.codes import Code
from compiler.diagnostics import Label
from compiler.span import Span
from compiler.stepgraph import written_steps
from compiler.suggest import closest

CODES = {
    "IR0801": Code(
        "template syntax error",
        "A string that contains `{{`, `{%` or `{#` is a Jinja template, and this one does not\n"
        "compile. Values are written `{{ label.instance }}`, blocks `{% if ... %}...{% endif %}`.\n"
        "The caret points at the tag that Jinja rejected.",
    ),
    "IR0802": Code(
        "unknown filter or test",
        "A template uses a filter (`{{ value | NAME }}`) or a test (`{% if value is NAME %}`)\n"
        "that the sandboxed Jinja environment does not have. Jinja's built-in filters such\n"
        "as `default`, `lower`, `upper`, `join`, `tojson` and `urlencode` are available.",
    ),
    "IR0803": Code(
        "invalid locale tag",
        "Template locales are BCP 47 language tags: a language (`en`, `de`), optionally a\n"
        "script (`zh-Hant`) and a region (`de-CH`, `es-419`). Regions are upper case and\n"
        "joined with `-`, not `_`.",
    ),
    "IR0804": Code(
        "template without `en` locale",
        "Every template needs an `en` locale. It is the fallback when a message is wanted\n"
        "in a locale that the template does not define.",
    ),
    "IR0805": Code(
        "locales define different fields",
        "The locales of one template should define the same fields. A field that one\n"
        "locale lacks falls back to `en`, which is rarely what a translator intended.",
    ),
    "IR0806": Code(
        "unknown template field",
        "A template locale defines the fields `subject`, `title`, `body`, `summary` and\n"
        "`text`. Channels pick the fields they show: email uses `subject` and `body`, chat\n"
        "channels use `title` and `text`, reports use `summary`.",
    ),
    "IR0807": Code(
        "locale or field defined twice",
        "A template defines each locale once, and a locale defines each field once.\n"
        "Otherwise one of the two texts would be silently ignored.",
    ),
    "IR0808": Code(
        "misspelt template variable",
        "A template reads a variable whose name is close to one of the data's roots, such\n"
        "as `lable` for `label`. An unknown variable renders as an empty string, so the\n"
        "message would silently lose the value.",
    ),
}

TEMPLATE_FIELDS = ("subject", "title", "body", "summary", "text")

# Variables a template can read. A close misspelling of one of them is reported.
KNOWN_VARIABLES = frozenset(expr.ROOT_ALIASES) | {"alerts", "params", "settings", "now", "runbook", "url"}
# Notification templates also read what the message is about (see runtime/notify/render.py).
MESSAGE_VARIABLES = KNOWN_VARIABLES | {"event", "receiver", "owner", "escalation", "services", "runbooks", "similar"}

_LOCALE = re.compile(r"[a-z]{2,3}(?:-[A-Z][a-z]{3})?(?:-(?:[A-Z]{2}|\d{3}))?")
_JINJA_START = ("{{", "{%", "{#")
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)
_SIMPLE_ESCAPES = frozenset('ntr"\\0')
# A complete tag, or an opening without its closing (which runs to the end of the text).
TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|\{\{.*|\{%.*|\{#.*", re.S)


@functools.cache
def sandbox() -> SandboxedEnvironment:
    """Return the environment that templates compile in: Jinja's sandbox with its built-in filters."""
    return SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


def has_template(text: str) -> bool:
    return any(start in text for start in _JINJA_START)


# ---------------------------------------------------------------- spans inside strings


def value_span(context: Context, string: ast.Str, start: int, end: int) -> Span:
    """Return the source span of `string.value[start:end]`, through escapes and across lines.

    Falls back to the whole string when its source text is unavailable.
    """
    source = context.project.sources.get(string.span.path)
    if source is None:
        return string.span
    offsets = _value_offsets(source.text[string.span.start : string.span.end], string)
    if offsets is None:
        return string.span
    base = string.span.start
    return source.span(base + offsets[start], base + offsets[max(start, end)])


def _value_offsets(raw: str, string: ast.Str) -> list[int] | None:
    """Map each index of the string's value, and its end, to an offset in the quoted source text."""
    quote = 3 if string.block else 1
    body_end = len(raw) - quote
    offsets: list[int] = []
    position = quote
    while position < body_end:
        escape = _ESCAPE.match(raw, position) if raw[position] == "\\" and not string.single_quoted else None
        if escape is None:
            offsets.append(position)
            position += 1
            continue
        code = escape.group(1)
        if (code.startswith("u") and len(code) == 5) or code in _SIMPLE_ESCAPES:
            offsets.append(position)  # one character of the value
        else:
            offsets.extend((position, position + 1))  # an unknown escape stays as written
        position = escape.end()
    offsets.append(body_end)
    return offsets if len(offsets) == len(string.value) + 1 else None


# ---------------------------------------------------------------- finding template strings


@dataclass(frozen=True, slots=True)
class TemplateString:
    """A string of the rules that is rendered as a template, with the variables it may read."""

    string: ast.Str
    where: str
    variables: frozenset[str] = KNOWN_VARIABLES


def template_strings(context: Context) -> Iterator[TemplateString]:
    """Yield every string that the daemon renders: template fields, step arguments and channel options."""
    for decl in context.project.decls:
        if isinstance(decl, ast.Template):
            for locale in decl.locales:
                for template_field in locale.fields:
                    yield TemplateString(template_field.value, f"template `{decl.name.value}`", MESSAGE_VARIABLES)
        elif isinstance(decl, (ast.Team, ast.Receiver)):
            for channel in decl.channels:
                for value in [channel.target, *(arg for option in channel.options for arg in option.args)]:
                    if isinstance(value, ast.Str):
                        yield TemplateString(value, f"{decl.kind} `{decl.name.value}`")
        elif isinstance(decl, ast.PagerDuty):
            for rule in decl.items:
                if isinstance(rule, ast.PagerDutyRule):
                    for prop in rule.items:
                        if isinstance(prop, ast.Property) and prop.key == "annotate":
                            yield TemplateString(prop.args[0], "pagerduty rule")
    for runbook in context.symbols.runbooks.values():
        for step in written_steps(runbook):
            for string in step_strings(step.items):
                yield TemplateString(string, f"runbook `{runbook.name.value}`")
    for action in context.symbols.actions.values():
        params = frozenset(param.name.value for param in action.params)
        for string in step_strings(action.items):
            yield TemplateString(string, f"action `{action.name.value}`", KNOWN_VARIABLES | params)


def step_strings(items: list[object]) -> Iterator[ast.Str]:
    """Yield the strings of a step or action body that are rendered when it runs."""
    for item in items:
        if isinstance(item, ast.StepKind):
            yield from _kind_strings(item)
        elif isinstance(item, ast.ActionCall):
            for arg in item.args:
                # A positional argument is the literal itself, and a named one is a `CallArg`.
                value = arg.value if isinstance(arg, ast.CallArg) else arg
                if isinstance(value, ast.Str):
                    yield value


def _kind_strings(step: ast.StepKind) -> Iterator[ast.Str]:
    for arg in step.args:
        if isinstance(arg, ast.Str):
            yield arg
        elif isinstance(arg, ast.StrList):
            yield from arg.items
    for option in step.options:
        for arg in option.args:
            if isinstance(arg, ast.Str):
                yield arg


# ---------------------------------------------------------------- compiling


def check_template_syntax(context: Context) -> None:
    for found in template_strings(context):
        string = found.string
        if not has_template(string.value):
            continue
        findings = inspect_template(string.value)
        if findings.error is not None:
            _report_syntax_error(context, found, findings.error)
            continue
        _check_filters_and_tests(context, found, findings.unknown)
        _check_variables(context, found, findings.variables)


class TemplateFindings(NamedTuple):
    """The findings on one template text: Jinja's syntax error, or its unknown filters and tests and the variables it reads."""

    error: jinja2.TemplateSyntaxError | None
    unknown: tuple[tuple[str, str], ...] = ()
    variables: tuple[str, ...] = ()


@functools.lru_cache(maxsize=4096)
def inspect_template(text: str) -> TemplateFindings:
    """Compile `text` once per process and collect its unknown filters and tests, and the variables it reads.

    Projects repeat the same few templates in many steps and channels.
    Jinja's code generator rewrites the syntax tree it walks, so the tree is
    read before anything else walks it, and only the findings are kept.
    """
    try:
        parsed = sandbox().parse(text)
        sandbox().compile(text)
    except jinja2.TemplateSyntaxError as error:
        return TemplateFindings(error=error.with_traceback(None))
    unknown = tuple(_unknown_filters_and_tests(parsed))
    return TemplateFindings(error=None, unknown=unknown, variables=tuple(sorted(meta.find_undeclared_variables(parsed))))


def _report_syntax_error(context: Context, found: TemplateString, error: jinja2.TemplateSyntaxError) -> None:
    string = found.string
    start, end = locate_error(string.value, error)
    span = value_span(context, string, start, end)
    unknown = re.match(r"No (filter|test) named '([^']*)'", error.message or "")
    if unknown:
        _report_unknown(context, found, *unknown.groups(), span)
        return
    context.sink.error(
        "IR0801",
        f"template syntax error in {found.where}: {_sentence(error.message)}",
        span,
        label="Jinja rejects this",
        help="values are written `{{ label.name }}`, blocks `{% if ... %}...{% endif %}` and literal braces `{{ '{{' }}`",
    )


def _unknown_filters_and_tests(parsed: jinja2.nodes.Template) -> Iterator[tuple[str, str]]:
    # Jinja resolves a filter or test inside `{% if %}` only when rendering, so walk the tree.
    for node in parsed.find_all((jinja2.nodes.Filter, jinja2.nodes.Test)):
        kind = "filter" if isinstance(node, jinja2.nodes.Filter) else "test"
        known = sandbox().filters if kind == "filter" else sandbox().tests
        if node.name not in known:
            yield kind, node.name


def _check_filters_and_tests(context: Context, found: TemplateString, unknown: tuple[tuple[str, str], ...]) -> None:
    for kind, name in unknown:
        start = _word_position(found.string.value, name)
        span = value_span(context, found.string, start, start + len(name)) if start >= 0 else found.string.span
        _report_unknown(context, found, kind, name, span)


def _report_unknown(context: Context, found: TemplateString, kind: str, name: str, span: Span) -> None:
    known = sandbox().filters if kind == "filter" else sandbox().tests
    suggestion = closest(name, known)
    examples = "`default`, `lower`, `join` and `tojson`" if kind == "filter" else "`defined`, `none` and `number`"
    context.sink.error(
        "IR0802",
        f"unknown {kind} `{name}` in {found.where}",
        span,
        label=f"no {kind} of this name",
        help=f"a {kind} with a similar name exists: `{suggestion}`"
        if suggestion
        else f"Jinja's built-in {kind}s are available, such as {examples}",
    )


def _sentence(message: str | None) -> str:
    """Return Jinja's first sentence in our style: lowercase, names in backticks, no final period."""
    text = (message or "invalid syntax").strip().split(". ")[0].rstrip(".")
    text = re.sub(r"'([^']*)'", r"`\1`", text)
    return text[:1].lower() + text[1:]


def locate_error(value: str, error: jinja2.TemplateSyntaxError) -> tuple[int, int]:
    """Return the range of `value` that caused `error`: a tag, a name, or the reported line."""
    message = error.message or ""
    line_start, line_end = _line_range(value, error.lineno or 1)
    tags = [match for match in TAG.finditer(value)]
    on_line = [match for match in tags if line_start <= match.start() < max(line_end, line_start + 1)]

    named = re.search(r"No (?:filter|test) named '([^']*)'|unknown tag '([^']*)'", message)
    if named:
        name = named.group(1) or named.group(2)
        word = re.compile(r"(?<![\w.])" + re.escape(name) + r"(?!\w)")
        for match in on_line or tags:
            found = word.search(value, match.start(), match.end())
            if found:
                return found.start(), found.end()
    innermost = re.search(r"innermost block that needs to be closed is '([^']*)'", message)
    if innermost:
        opener = re.compile(r"\{%-?\s*" + re.escape(innermost.group(1)) + r"\b")
        openings = [match for match in on_line if opener.match(value, match.start())]
        if openings:
            return openings[-1].start(), openings[-1].end()
    unclosed = [match for match in tags if not match.group().endswith(("}}", "%}", "#}")) or len(match.group()) < 4]
    if unclosed and ("end of template" in message or "Missing end" in message or not on_line):
        return unclosed[0].start(), _end_of_line(value, unclosed[0].start())
    for match in on_line:
        if match.group().startswith("{{") and _fails_alone(match.group()):
            return match.start(), match.end()
    if unclosed:
        return unclosed[0].start(), _end_of_line(value, unclosed[0].start())
    if on_line:
        return on_line[0].start(), on_line[0].end()
    return line_start, line_end


def _line_range(value: str, lineno: int) -> tuple[int, int]:
    start = 0
    for _ in range(lineno - 1):
        found = value.find("\n", start)
        if found == -1:
            break
        start = found + 1
    return start, _end_of_line(value, start)


def _end_of_line(value: str, position: int) -> int:
    end = value.find("\n", position)
    return len(value) if end == -1 else end


def _fails_alone(tag: str) -> bool:
    try:
        sandbox().parse(tag)
    except jinja2.TemplateSyntaxError:
        return True
    return False


def _check_variables(context: Context, found: TemplateString, variables: tuple[str, ...]) -> None:
    for name in variables:
        if name in found.variables:
            continue
        suggestion = closest(name, sorted(found.variables))
        if suggestion is None:
            continue
        start = _word_position(found.string.value, name)
        context.sink.warning(
            "IR0808",
            f"unknown variable `{name}` in {found.where}",
            value_span(context, found.string, start, start + len(name)) if start >= 0 else found.string.span,
            label="renders as an empty string",
            help=f"a variable with a similar name exists: `{suggestion}`",
        )


def _word_position(value: str, name: str) -> int:
    word = re.compile(r"(?<![\w.])" + re.escape(name) + r"(?!\w)")
    for tag in TAG.finditer(value):
        found = word.search(value, tag.start(), tag.end())
        if found:
            return found.start()
    return -1


# ---------------------------------------------------------------- template declarations


def check_template_declarations(context: Context) -> None:
    for decl in context.project.decls:
        if isinstance(decl, ast.Template):
            _check_locales(context, decl)
            for locale in decl.locales:
                _check_fields(context, decl, locale)
            _check_field_sets(context, decl)


def _check_locales(context: Context, template: ast.Template) -> None:
    seen: dict[str, ast.Name] = {}
    for locale in template.locales:
        tag = locale.locale
        if not _LOCALE.fullmatch(tag.value):
            canonical = canonical_locale(tag.value)
            context.sink.error(
                "IR0803",
                f"invalid locale tag `{tag.value}` in template `{template.name.value}`",
                tag.span,
                label="not a language tag",
                help=f"write `{canonical}`"
                if canonical
                else "write a language tag such as `en`, `de` or `de-CH`: a language, then a region in upper case",
            )
        first = seen.setdefault(tag.value, tag)
        if first is not tag:
            _report_twice(context, "locale", tag, first, f"template `{template.name.value}`")
    if "en" not in seen:
        context.sink.error(
            "IR0804",
            f"template `{template.name.value}` has no `en` locale",
            template.name.span,
            label="no `en { ... }` block",
            help="add an `en { ... }` block, because messages in a locale that the template lacks fall back to it",
        )


def canonical_locale(text: str) -> str | None:
    """Return the canonical spelling of a locale tag written in the wrong case or with `_`, if any."""
    parts = re.split(r"[-_]", text)
    fixed = [parts[0].lower()]
    for part in parts[1:]:
        fixed.append(part.title() if len(part) == 4 else part.upper())
    candidate = "-".join(fixed)
    return candidate if _LOCALE.fullmatch(candidate) else None


def _check_fields(context: Context, template: ast.Template, locale: ast.TemplateLocale) -> None:
    seen: dict[str, ast.Name] = {}
    where = f"locale `{locale.locale.value}` of template `{template.name.value}`"
    for template_field in locale.fields:
        name = template_field.name
        if name.value not in TEMPLATE_FIELDS:
            suggestion = closest(name.value, TEMPLATE_FIELDS)
            context.sink.error(
                "IR0806",
                f"unknown template field `{name.value}`",
                name.span,
                label="not a template field",
                help=f"a field with a similar name exists: `{suggestion}`"
                if suggestion
                else f"template fields are {_listed(list(TEMPLATE_FIELDS))}",
            )
        first = seen.setdefault(name.value, name)
        if first is not name:
            _report_twice(context, "field", name, first, where)


def _report_twice(context: Context, what: str, again: ast.Name, first: ast.Name, where: str) -> None:
    context.sink.error(
        "IR0807",
        f"{what} `{again.value}` is defined twice in {where}",
        again.span,
        label="defined again here",
        labels=(Label(first.span, "first defined here"),),
        help="remove one of the two, or merge their texts",
    )


def _check_field_sets(context: Context, template: ast.Template) -> None:
    # One locale per tag: a repeated locale is reported as defined twice, not compared.
    locales: dict[str, ast.TemplateLocale] = {}
    for locale in template.locales:
        locales.setdefault(locale.locale.value, locale)
    if len(locales) < 2:
        return
    reference = locales.get("en", template.locales[0])
    expected = _field_names(reference)
    for locale in locales.values():
        if locale is reference:
            continue
        defined = _field_names(locale)
        missing = [name for name in TEMPLATE_FIELDS if name in expected - defined]
        extra = [name for name in TEMPLATE_FIELDS if name in defined - expected]
        if not missing and not extra:
            continue
        parts = []
        if missing:
            parts.append("lacks " + _listed(missing))
        if extra:
            parts.append("adds " + _listed(extra))
        context.sink.warning(
            "IR0805",
            f"locale `{locale.locale.value}` of template `{template.name.value}` {' and '.join(parts)}",
            locale.locale.span,
            label=f"fields differ from `{reference.locale.value}`",
            labels=(Label(reference.locale.span, "the fields of this locale"),),
            help=f"define the same fields in every locale, because a missing field falls back to `{reference.locale.value}`",
        )


def _field_names(locale: ast.TemplateLocale) -> set[str]:
    """Return the known field names of a locale, leaving out unknown names, which are reported on their own."""
    return {item.name.value for item in locale.fields if item.name.value in TEMPLATE_FIELDS}


def _listed(names: list[str]) -> str:
    quoted = [f"`{name}`" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


CHECKS = [check_template_declarations, check_template_syntax]
