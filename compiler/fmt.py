"""Print a parsed file back in the canonical layout, keeping every comment.

The layout: two-space indentation, one property per line, `name {` ... `}`
blocks (only empty blocks stay on one line, as `{}`), one blank line between
top-level declarations and at most one where the author left blank lines
inside a block. Values print as written, except that strings are re-quoted
with the fewest escapes and expressions get the fewest parentheses. A line
wider than `MAX_INLINE_WIDTH` splits where the language has a list of parts.

Comments are not part of the AST, so the printer places them by source offset.
A comment on a line of its own prints before the node that follows it, at
that node's indentation, or before the closing brace when nothing follows.
A comment after code stays at the end of that line. A comment inside a node
that prints on one line (a condition written over several lines) moves above
that node.

`format_source` checks its own output: the result must parse back to the same
AST (spans aside) with the same comments, or it raises instead of returning.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from compiler import ast
from compiler.diagnostics import DiagnosticSink
from compiler.errors import CompileFailed
from compiler.loader import parse_recovering
from compiler.parse import parse_text
from compiler.span import SourceFile, Span

INDENT = "  "
# Wider lines split where the language allows: test label sets and action
# parameters print one entry per line, channel and step options one per
# continuation line.
MAX_INLINE_WIDTH = 100

_BLANK_LINE = re.compile(r"\n[ \t\r\f]*\n")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*")
# One token of source text, enough to find braces and keywords outside strings and comments.
_CODE_TOKEN = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*|\S',
    re.S,
)
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_STRING_ESCAPES = {'"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}
# Characters that form an escape after a backslash, so a literal backslash before them is doubled.
_ESCAPE_LETTERS = frozenset('ntr0"\\')

# Keywords printed between the arguments of a property or step, by (keyword, argument index).
_PROPERTY_GLUE = {
    ("retry", 1): "backoff",
    ("repeat", 1): "every",
    ("escalate", 0): "to",
    ("rate_limit", 1): "per",
    ("approval", 0): "from",
    ("approval", 1): "timeout",
}
_STEP_GLUE = {
    ("query", 0): "prometheus",
    ("notify", 1): "template",
    ("approve", 0): "from",
    ("approve", 1): "timeout",
    ("set", 1): "=",
    ("assist", 0): "focus",
}
_LABEL_SET_KEYS = frozenset({"alert", "annotations", "also_firing"})
# Keywords printed before the arguments of a test line, by (key, argument index).
_TEST_GLUE = {
    ("expect page", 2): "at",
    ("expect escalation", 0): "level",
    ("expect escalation", 1): "to",
    ("expect escalation", 2): "at",
    ("expect runbook", 1): "path",
    ("expect runbook", 2): "at",
}

# Expression precedence, loosest first. An operand binds tighter than any operator.
_OR, _AND, _NOT, _COMPARE, _OPERAND = range(1, 6)


def format_source(text: str, path: str) -> str:
    """Return `text` in the canonical layout.

    Example:
        format_source('team ops { slack "#ops" }', "ops.irules")
        # 'team ops {\\n  slack "#ops"\\n}\\n'

    Raises:
        CompileFailed: the text has syntax errors; `diagnostics` lists them all.
        AssertionError: the printed text would not mean the same (a bug in irules).
    """
    sink = DiagnosticSink()
    module = parse_recovering(SourceFile(path, text), sink)
    if sink.has_errors:
        raise CompileFailed(sink.sorted())
    formatted = format_module(module, text)
    _verify(module, formatted, path)
    return formatted


def format_module(module: ast.Module, text: str) -> str:
    """Print a module parsed from `text`, which supplies the comments and block strings."""
    printer = _Printer(text, module.comments)
    printer.module(module)
    return printer.result()


# ---------------------------------------------------------------- values and expressions


def quote(value: str) -> str:
    """Return `value` as a double-quoted string literal with the fewest escapes."""
    out = ['"']
    for index, char in enumerate(value):
        if char == "\\":
            out.append("\\" if _backslash_stands_alone(value, index) else "\\\\")
        elif char in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[char])
        elif unicodedata.category(char) == "Cc":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _backslash_stands_alone(value: str, index: int) -> bool:
    """Tell whether a backslash can be written bare: the next character must not form an escape with it."""
    following = value[index + 1 : index + 2]
    if not following or following in _ESCAPE_LETTERS or following in _STRING_ESCAPES:
        return False
    if unicodedata.category(following) == "Cc":
        return False
    return not (following == "u" and _HEX4.match(value, index + 2))


def _precedence(node: object) -> int:
    if isinstance(node, ast.BoolOp):
        return _OR if node.op == "or" else _AND
    if isinstance(node, ast.Not):
        return _NOT
    if isinstance(node, ast.Compare):
        return _COMPARE
    return _OPERAND


# ---------------------------------------------------------------- the printer


@dataclass(slots=True)
class _Comment:
    offset: int
    text: str
    own_line: bool


@dataclass(slots=True)
class _MapBlock:
    """The `map { }` block of a source, whose position the AST does not keep."""

    start: int
    end: int
    mappings: list[ast.FieldMapping]


class _Printer:
    """Collect output lines, placing comments and blank lines by source offset."""

    def __init__(self, text: str, comments: Iterable[tuple[int, str]]) -> None:
        self.text = text
        self.comments = [_Comment(offset, body, self._alone_on_line(offset)) for offset, body in sorted(comments)]
        self.offsets = [comment.offset for comment in self.comments]
        self.next_comment = 0
        self.lines: list[str] = []
        self.depth = 0
        self.last_end = 0
        self.force_blank = False
        self.at_block_start = False
        self.last_is_code = False
        self.has_trailing = False

        self.printers: dict[type, Callable[[Any], None]] = {
            # Declarations.
            ast.Settings: self.simple_block,
            ast.Defaults: self.simple_block,
            ast.Slack: self.simple_block,
            ast.PagerDuty: self.simple_block,
            ast.Environment: self.environment,
            ast.Team: self.team,
            ast.Receiver: self.receiver,
            ast.Service: self.service,
            ast.RouteDecl: self.route_decl,
            ast.Inhibit: self.inhibit,
            ast.TimeInterval: self.time_interval,
            ast.SeverityDecl: self.severity,
            ast.Grouping: self.grouping,
            ast.Escalation: self.escalation,
            ast.Source: self.source,
            ast.Action: self.action,
            ast.Runbook: self.runbook,
            ast.Template: self.template,
            ast.Test: self.test,
            ast.Use: self.use,
            # Nodes that print on one line, or with options on continuation lines.
            ast.Property: self.leaf,
            ast.Channel: self.leaf,
            ast.SeverityRule: self.leaf,
            ast.SeverityElse: self.leaf,
            ast.EscalationStep: self.leaf,
            ast.FieldMapping: self.leaf,
            ast.StepKind: self.leaf,
            ast.ActionCall: self.leaf,
            ast.TemplateField: self.leaf,
            # Nodes that print as blocks, or as one line when they have no block.
            ast.Route: self.route,
            ast.Period: self.period,
            ast.PagerDutyRule: self.pagerduty_rule,
            ast.EscalationSeverityBlock: self.escalation_block,
            ast.Step: self.step,
            ast.Parallel: self.parallel,
            ast.TemplateLocale: self.template_locale,
            ast.TestItem: self.test_item,
            ast.ScenarioEvent: self.scenario_event,
            _MapBlock: self.map_block,
        }

    def _alone_on_line(self, offset: int) -> bool:
        line_start = self.text.rfind("\n", 0, offset) + 1
        return not self.text[line_start:offset].strip()

    # ------------------------------------------------------------ output

    def result(self) -> str:
        self._flush_comments(len(self.text) + 1)
        return "\n".join(self.lines) + "\n" if self.lines else ""

    def _emit(self, content: str, start: int, end: int, *, blank_allowed: bool = True) -> None:
        """Write one line, after a blank line where the source had one."""
        if self.lines and blank_allowed and self._wants_blank(start):
            self.lines.append("")
        self.lines.append(INDENT * self.depth + content)
        self.last_end = end
        self.force_blank = False
        self.at_block_start = False
        self.has_trailing = False

    def _wants_blank(self, start: int) -> bool:
        if self.force_blank:
            return True
        if self.at_block_start:
            return False
        return _BLANK_LINE.search(self.text, self.last_end, max(start, self.last_end)) is not None

    def _flush_comments(self, limit: int, *, above: bool = False) -> None:
        """Print the comments before `limit`, on lines of their own when `above` is set."""
        while self.next_comment < len(self.comments) and self.comments[self.next_comment].offset < limit:
            comment = self.comments[self.next_comment]
            self.next_comment += 1
            end = comment.offset + len(comment.text)
            if not (above or comment.own_line) and self.last_is_code and not self.has_trailing:
                self.lines[-1] += "  " + comment.text
                self.has_trailing = True
                self.last_end = end
            else:
                self._emit(comment.text, comment.offset, end)
                self.last_is_code = False

    def line(self, content: str, start: int, end: int) -> None:
        """Print a node on one line, with the comments written inside it moved above it."""
        self._flush_comments(start)
        self._flush_comments(end, above=True)
        self._emit(content, start, end)
        self.last_is_code = True

    def _has_comment_between(self, start: int, end: int) -> bool:
        index = bisect.bisect_right(self.offsets, start)
        return index < len(self.offsets) and self.offsets[index] < end

    def _find_code(self, token: str, start: int, end: int | None = None) -> int | None:
        """Return the offset of the first `token` at or after `start`, outside strings and comments."""
        for match in _CODE_TOKEN.finditer(self.text, start, len(self.text) if end is None else end):
            if match.group() == token:
                return match.start()
        return None

    def _fits(self, text: str) -> bool:
        return len(INDENT * self.depth + text) <= MAX_INLINE_WIDTH

    def _code_end(self, start: int, limit: int) -> int:
        """Return the end of the last token before `limit`, so a comment after it stays on its line."""
        end = start
        for match in _CODE_TOKEN.finditer(self.text, start, limit):
            if not match.group().startswith("#"):
                end = match.end()
        return end

    def block(self, header: str, start: int, end: int, items: Iterable[Any]) -> None:
        """Print `header {`, the items one level deeper, and `}`, or `header {}` for an empty block without comments."""
        items = [item for item in items if item is not None]
        brace = self._find_code("{", start, end)
        if brace is None:
            brace = start
        if not items and not self._has_comment_between(brace, end - 1):
            self.line(header + " {}", start, end)
            return
        self.line(header + " {", start, brace + 1)
        self._body(items, end)

    def _body(self, items: list[Any], end: int) -> None:
        """Print the items of a block whose `{` line is out, then its `}` (the last character before `end`)."""
        self.depth += 1
        self.at_block_start = True
        for item in items:
            self.item(item)
        self._close(end - 1, "}")

    def _close(self, at: int, text: str, end: int | None = None) -> None:
        """Print the comments left before offset `at` one level deeper, then the closing line."""
        self._flush_comments(at)
        self.depth -= 1
        self._emit(text, at, at + 1 if end is None else end, blank_allowed=False)
        self.last_is_code = True

    def _spread(self, opener: str, start: int, open_at: int, entries: list[tuple[str, Any]]) -> None:
        """Print `opener`, then one comma-separated entry per line one level deeper, and leave the closing line to the caller."""
        self.line(opener, start, open_at + 1)
        self.depth += 1
        self.at_block_start = True
        for index, (text, node) in enumerate(entries):
            self.line(text + ("," if index < len(entries) - 1 else ""), node.span.start, node.span.end)

    def item(self, node: Any) -> None:
        self.printers[type(node)](node)

    # ------------------------------------------------------------ declarations

    def module(self, module: ast.Module) -> None:
        for index, decl in enumerate(module.decls):
            self.force_blank = index > 0
            self.item(decl)

    def simple_block(self, decl: ast.Settings | ast.Defaults | ast.Slack | ast.PagerDuty) -> None:
        self.block(decl.kind, decl.span.start, decl.span.end, decl.items)

    def environment(self, decl: ast.Environment) -> None:
        self.block(f"environment {decl.name.value}", decl.span.start, decl.span.end, decl.decls)

    def team(self, decl: ast.Team) -> None:
        self.block(f"team {decl.name.value}", decl.span.start, decl.span.end, decl.items)

    def receiver(self, decl: ast.Receiver) -> None:
        self.block(f"receiver {decl.name.value}", decl.span.start, decl.span.end, decl.channels)

    def service(self, decl: ast.Service) -> None:
        self.block(f"service {decl.name.value}", decl.span.start, decl.span.end, decl.items)

    def route_decl(self, decl: ast.RouteDecl) -> None:
        self.block("route", decl.span.start, decl.span.end, decl.root.items)

    def inhibit(self, decl: ast.Inhibit) -> None:
        text = f"inhibit {self.matchers(decl.source)} silences {self.matchers(decl.target)}"
        if decl.equal is not None:
            text += f" on {self.value(decl.equal)}"
        self.line(text, decl.span.start, decl.span.end)

    def time_interval(self, decl: ast.TimeInterval) -> None:
        # Fields outside `period` blocks form one implicit period, but they print where they were written.
        items: list[ast.Property | ast.Period] = []
        for period in decl.periods:
            items.extend([period] if period.explicit else period.items)
        items.sort(key=lambda item: item.span.start)
        self.block(f"time_interval {decl.name.value}", decl.span.start, decl.span.end, items)

    def severity(self, decl: ast.SeverityDecl) -> None:
        self.block("severity", decl.span.start, decl.span.end, [*decl.rules, decl.fallback])

    def grouping(self, decl: ast.Grouping) -> None:
        header = decl.kind if decl.name is None else f"{decl.kind} {decl.name.value}"
        self.block(header, decl.span.start, decl.span.end, decl.items)

    def escalation(self, decl: ast.Escalation) -> None:
        self.block(f"escalation {decl.name.value}", decl.span.start, decl.span.end, decl.items)

    def source(self, decl: ast.Source) -> None:
        items: list[ast.Property | _MapBlock] = list(decl.items)
        if decl.mappings:
            items.append(self._map_block(decl))
        items.sort(key=lambda item: item.start if isinstance(item, _MapBlock) else item.span.start)
        self.block(f"source {decl.name.value}", decl.span.start, decl.span.end, items)

    def _map_block(self, decl: ast.Source) -> _MapBlock:
        """Locate the `map` keyword and closing brace around the mappings (several blocks print as one)."""
        first, last = decl.mappings[0].span, decl.mappings[-1].span
        start = first.start
        for match in _CODE_TOKEN.finditer(self.text, decl.span.start, first.start):
            if match.group() == "map":
                start = match.start()
        closing = self._find_code("}", last.end, decl.span.end)
        end = last.end if closing is None else closing + 1
        return _MapBlock(start=start, end=end, mappings=decl.mappings)

    def action(self, decl: ast.Action) -> None:
        params = [self.param(param) for param in decl.params]
        header = f"action {decl.name.value}({', '.join(params)})"
        start, end = decl.span.start, decl.span.end
        opening = self._find_code("(", start, end)
        closing = None if opening is None else self._find_code(")", opening, end)
        if opening is None or closing is None or not params:
            self.block(header, start, end, decl.items)
            return
        if self._fits(header + " {") and not self._has_comment_between(opening, closing):
            self.block(header, start, end, decl.items)
            return
        # Long parameter lists, or ones with comments, print one parameter per line.
        self._spread(f"action {decl.name.value}(", start, opening, list(zip(params, decl.params, strict=True)))
        brace = self._find_code("{", closing, end)
        items = [item for item in decl.items if item is not None]
        if brace is None or (not items and not self._has_comment_between(brace, end - 1)):
            self._close(closing, ") {}", end)
            return
        self._close(closing, ") {", brace + 1)
        self._body(items, end)

    def runbook(self, decl: ast.Runbook) -> None:
        header = f"runbook {decl.name.value}"
        if decl.title is not None:
            header += " " + self.value(decl.title)
        self.block(header, decl.span.start, decl.span.end, decl.items)

    def template(self, decl: ast.Template) -> None:
        self.block(f"template {decl.name.value}", decl.span.start, decl.span.end, decl.locales)

    def test(self, decl: ast.Test) -> None:
        self.block(f"test {self.value(decl.title)}", decl.span.start, decl.span.end, decl.items)

    def use(self, decl: ast.Use) -> None:
        self.line(f"use {decl.what.value} {self.value(decl.names)}", decl.span.start, decl.span.end)

    # ------------------------------------------------------------ nested blocks

    def leaf(self, node: Any) -> None:
        """Print a node on one line, or with its options on lines of their own when long or commented."""
        start, end = node.span.start, node.span.end
        head, options = self.head_and_options(node)
        text = " ".join([head, *(self.value(option) for option in options)])
        # Comments after the first option keep the options apart (a comment inside it moves above it).
        if not options or (self._fits(text) and not self._has_comment_between(options[0].span.end - 1, end)):
            self.line(text, start, end)
            return
        self.line(head, start, self._code_end(start, options[0].span.start))
        self.depth += 1
        for option in options:
            self.line(self.value(option), option.span.start, option.span.end)
        self.depth -= 1

    def route(self, route: ast.Route) -> None:
        header = f"match {self.matchers(route.matchers)}" if route.matchers else "route"
        arrow = _arrow_receiver(route)
        if arrow is not None:
            header += f" -> {arrow.value}"
        if route.has_block:
            self.block(header, route.span.start, route.span.end, route.items)
        else:
            self.line(header, route.span.start, route.span.end)

    def period(self, period: ast.Period) -> None:
        self.block("period", period.span.start, period.span.end, period.items)

    def pagerduty_rule(self, rule: ast.PagerDutyRule) -> None:
        self.block(f"rule {self.value(rule.title)}", rule.span.start, rule.span.end, rule.items)

    def escalation_block(self, block: ast.EscalationSeverityBlock) -> None:
        self.block(f"for severity {self.value(block.levels)}", block.span.start, block.span.end, block.steps)

    def map_block(self, block: _MapBlock) -> None:
        self.block("map", block.start, block.end, block.mappings)

    def step(self, step: ast.Step) -> None:
        header = f"step {step.name.value}"
        if step.after is not None:
            header += " after " + ", ".join(name.value for name in step.after.items)
        self.block(header, step.span.start, step.span.end, step.items)

    def parallel(self, parallel: ast.Parallel) -> None:
        self.block("parallel", parallel.span.start, parallel.span.end, parallel.steps)

    def template_locale(self, locale: ast.TemplateLocale) -> None:
        self.block(locale.locale.value, locale.span.start, locale.span.end, locale.fields)

    def test_item(self, item: ast.TestItem) -> None:
        if item.key not in _LABEL_SET_KEYS:
            self.leaf(item)
            return
        pairs = [self.value(pair) for pair in item.pairs]
        one_line = f"{item.key} {{ {', '.join(pairs)} }}" if pairs else f"{item.key} {{}}"
        start, end = item.span.start, item.span.end
        brace = self._find_code("{", start, end)
        if brace is None or not pairs or (self._fits(one_line) and not self._has_comment_between(brace, end - 1)):
            self.line(one_line, start, end)
            return
        # A long label set, or one with comments, prints one pair per line.
        self._spread(f"{item.key} {{", start, brace, list(zip(pairs, item.pairs, strict=True)))
        self._close(end - 1, "}")

    def scenario_event(self, event: ast.ScenarioEvent) -> None:
        start, end = event.span.start, event.span.end
        sets = [(event.labels, event.labels_span)]
        if event.annotations is not None and event.annotations_span is not None:
            sets.append((event.annotations, event.annotations_span))
        tail = f" by {self.string(event.by)}" if event.by is not None else ""
        tail += f" at {self.value(event.at)}"
        texts = [[self.value(pair) for pair in pairs] for pairs, _span in sets]
        one_line = event.kind + "".join(
            (" annotations " if index else " ") + _label_set_text(entries) for index, entries in enumerate(texts)
        )

        # Comments after the last `}` move above a one-line event, as in any one-line node.
        if self._fits(one_line + tail) and not self._has_comment_between(event.labels_span.start, sets[-1][1].end):
            self.line(one_line + tail, start, end)
        else:
            self._spread_event(event, sets, texts, tail)

    def _spread_event(
        self, event: ast.ScenarioEvent, sets: list[tuple[list[ast.LabelPair], Span]], texts: list[list[str]], tail: str
    ) -> None:
        """Print an event with one label per line, as `fire {` ... `} annotations {` ... `} at 0m`; an empty set stays `{}`."""
        pending, open_set_end = event.kind, None
        for index, ((pairs, span), entries) in enumerate(zip(sets, texts, strict=True)):
            follow = tail if index == len(sets) - 1 else " annotations"
            if not entries:
                pending += " {}" + follow
                continue
            if open_set_end is None:
                self.line(pending + " {", event.span.start, span.start + 1)
            else:
                self._close(open_set_end, "}" + pending + " {", span.start + 1)
            self.depth += 1
            self.at_block_start = True
            for number, (text, pair) in enumerate(zip(entries, pairs, strict=True)):
                self.line(text + ("," if number < len(entries) - 1 else ""), pair.span.start, pair.span.end)
            pending, open_set_end = follow, span.end - 1

        if open_set_end is None:
            self.line(pending, event.span.start, event.span.end)
        else:
            self._close(open_set_end, "}" + pending, event.span.end)

    # ------------------------------------------------------------ text of one-line nodes

    def value(self, node: Any) -> str:
        """Return the source text of a value, expression or one-line node."""
        match node:
            case ast.Name():
                return node.value
            case ast.Str():
                return self.string(node)
            case ast.Int():
                return str(node.value)
            case ast.Number() | ast.Duration() | ast.Percent():
                return node.text
            case ast.Bool():
                return "true" if node.value else "false"
            case ast.Secret():
                return f"secret({self.string(node.name)})"
            case ast.LabelName():
                return quote(node.value) if node.quoted else node.value
            case ast.NameList() | ast.StrList() | ast.LabelList() | ast.IntList():
                return "[" + ", ".join(self.value(item) for item in node.items) + "]"
            case ast.Property() | ast.Channel() | ast.StepKind() | ast.SeverityElse():
                head, options = self.head_and_options(node)
                return " ".join([head, *(self.value(option) for option in options)])
            case ast.Matcher():
                return f"{self.value(node.label)} {node.op} {self.string(node.value)}"
            case ast.SeverityRule():
                return f"{node.level.value} when {self.expr(node.condition)}"
            case ast.EscalationStep():
                return f"after {node.delay.text} {node.state} {self.value(node.action)}"
            case ast.FieldMapping():
                return f"{self.expr(node.target)} = {self.expr(node.value)}"
            case ast.ActionCall():
                return " ".join([node.action.value, *(self.call_arg(arg) for arg in node.args)])
            case ast.TemplateField():
                return f"{node.name.value} {self.string(node.value)}"
            case ast.TestItem():
                parts = [node.key]
                for index, arg in enumerate(node.args):
                    if arg is not None:
                        glue = _TEST_GLUE.get((node.key, index))
                        parts.extend([glue, self.value(arg)] if glue else [self.value(arg)])
                return " ".join(parts)
            case ast.LabelPair():
                return f"{self.value(node.name)} = {self.string(node.value)}"
            case ast.Path() | ast.ListExpr() | ast.Compare() | ast.BoolOp() | ast.Not():
                return self.expr(node)
            case _:
                raise AssertionError(f"the formatter has no layout for {type(node).__name__}")

    def string(self, node: ast.Str) -> str:
        if node.single_quoted:
            return f"'{node.value}'"
        if node.block:
            written = self.text[node.span.start : node.span.end]
            if written.startswith('"""') and written.endswith('"""'):
                return written
        return quote(node.value)

    def matchers(self, matchers: list[ast.Matcher]) -> str:
        return ", ".join(self.value(matcher) for matcher in matchers)

    def head_and_options(self, node: Any) -> tuple[str, list[ast.Property]]:
        """Split a node into its leading text and the trailing options that may go on lines of their own."""
        match node:
            case ast.Property():
                args = [arg for arg in node.args if arg is not None]
                options = [arg for arg in args if isinstance(arg, ast.Property)]
                args = [arg for arg in args if not isinstance(arg, ast.Property)]
                if args and all(isinstance(arg, ast.Matcher) for arg in args):
                    return f"{node.key} {self.matchers(args)}", options
                return _with_glue(node.key, [self.value(arg) for arg in args], _PROPERTY_GLUE), options
            case ast.Channel():
                head = node.kind if node.target is None else f"{node.kind} {self.value(node.target)}"
                return head, node.options
            case ast.StepKind():
                args = [self.value(arg) for arg in node.args if arg is not None]
                return _with_glue(node.kind, args, _STEP_GLUE), node.options
            case ast.SeverityElse() if node.classify:
                return "else classify", node.options
            case ast.SeverityElse():
                return f"else {self.value(node.level)}", []
            case _:
                return self.value(node), []

    def call_arg(self, arg: ast.CallArg | ast.Literal) -> str:
        # A bare literal argument reaches the AST as the literal itself, not wrapped in a `CallArg`.
        if not isinstance(arg, ast.CallArg):
            return self.value(arg)
        if arg.name is None:
            return self.value(arg.value)
        return f"{arg.name.value} = {self.value(arg.value)}"

    def param(self, param: ast.Param) -> str:
        text = f"{param.name.value}: {param.type.value}"
        if param.default is not None:
            text += f" = {self.value(param.default)}"
        if param.pattern is not None:
            text += f" matching {self.string(param.pattern)}"
        return text

    def expr(self, node: Any, loosest: int = 0) -> str:
        """Return an expression, in parentheses when it binds looser than `loosest` allows."""
        # An explicit stack replaces recursion because conditions may nest as deep as the parser allows.
        out: list[str] = []
        stack: list[Any] = [(node, loosest)]
        while stack:
            top = stack.pop()
            if isinstance(top, str):
                out.append(top)
                continue
            node, loosest = top
            parts = self._expr_parts(node)
            if _precedence(node) < loosest:
                parts = ["(", *parts, ")"]
            stack.extend(reversed(parts))
        return "".join(out)

    def _expr_parts(self, node: Any) -> list[Any]:
        """Return the pieces of one expression node, each a text or an `(operand, loosest)` pair."""
        match node:
            case ast.BoolOp():
                tighter = _precedence(node) + 1
                parts: list[Any] = []
                for index, item in enumerate(node.items):
                    parts.extend([f" {node.op} ", (item, tighter)] if index else [(item, tighter)])
                return parts
            case ast.Not():
                return ["not ", (node.item, _NOT)]
            case ast.Compare():
                return [(node.left, _OPERAND), f" {node.op} ", (node.right, _OPERAND)]
            case ast.ListExpr():
                parts = ["["]
                for index, item in enumerate(node.items):
                    parts.extend([", ", (item, 0)] if index else [(item, 0)])
                return [*parts, "]"]
            case ast.Path():
                rest = [f".{part}" if _IDENT.fullmatch(part) else f"[{quote(part)}]" for part in node.parts[1:]]
                return [node.parts[0], *rest]
            case _:
                return [self.value(node)]


def _with_glue(keyword: str, args: list[str], glue: dict[tuple[str, int], str]) -> str:
    parts = [keyword]
    for index, arg in enumerate(args):
        word = glue.get((keyword, index))
        parts.extend([word, arg] if word else [arg])
    return " ".join(parts)


def _label_set_text(entries: list[str]) -> str:
    return f"{{ {', '.join(entries)} }}" if entries else "{}"


def _arrow_receiver(route: ast.Route) -> ast.Name | None:
    """Return the receiver written after `->`, which `route.receiver` mixes with a `receiver` property."""
    if route.is_root or route.receiver is None:
        return None
    for item in route.properties:
        if item.key == "receiver" and item.args and item.args[0] is route.receiver:
            return None
    return route.receiver


# ---------------------------------------------------------------- self-check


def same_meaning(first: ast.Module, second: ast.Module) -> bool:
    """Tell whether two parses hold the same AST (spans aside) and the same comments in the same order."""
    if [text for _offset, text in first.comments] != [text for _offset, text in second.comments]:
        return False
    # An explicit stack replaces recursion because expressions may nest as deep as the parser allows.
    pending: list[tuple[object, object]] = [(first.decls, second.decls)]
    while pending:
        left, right = pending.pop()
        if type(left) is not type(right):
            return False
        if isinstance(left, list):
            if len(left) != len(right):
                return False
            pending.extend(zip(left, right, strict=True))
        elif dataclasses.is_dataclass(left):
            names = [field.name for field in dataclasses.fields(left) if not field.name.endswith(("span", "spans"))]
            pending.extend((getattr(left, name), getattr(right, name)) for name in names)
        elif left != right:
            return False
    return True


def _verify(module: ast.Module, formatted: str, path: str) -> None:
    try:
        again = parse_text(formatted, path)
    except Exception as error:
        raise AssertionError(f"the formatted text of `{path}` does not parse ({error}); this is a bug in irules") from error
    if not same_meaning(module, again):
        raise AssertionError(f"formatting `{path}` would change its meaning or comments; this is a bug in irules")
