"""Turn the parser's reductions into AST nodes with spans.

The callbacks run inside the LALR parser (no intermediate parse tree), so
each method receives already-built children. Methods share their grammar
rule's name; property rules without a method become `ast.Property`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from compiler import ast
from compiler.lexer import Tok, new_span
from compiler.span import Span

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "0": "\0"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)
# The letters, digits and underscores of a keyword. `\w` matches what `str.isalnum()` accepts, and `_`.
_WORD = re.compile(r"\w*")

# Property rules whose keyword is more than the first word of the source text.
MAX_NESTING = 64

_KEY_OVERRIDES = {
    "src_auth_bearer": "auth bearer",
    "src_auth_hmac": "auth hmac",
    "src_auth_basic": "auth basic",
    "src_auth_none": "auth none",
    "src_resolved_when": "resolved when",
}
_PROPERTY_PREFIXES = (
    "set_",
    "smtp_",
    "opt_",
    "svc_",
    "tf_",
    "classify_",
    "grouping_",
    "dedup_",
    "correlate_",
    "pd_",
    "slack_",
    "esc_",
    "src_",
    "hmac_",
    "basic_",
    "rb_",
    "st_",
    "http_",
    "run_",
    "team_",
    "route_",
)
_TIMING = {"group_by", "group_wait", "group_interval", "repeat_interval"}
_NOT_PROPERTIES = {"pd_rule", "src_map", "esc_for_severity", "route_block", "route_child"}


def duration_seconds(text: str) -> float:
    return sum(int(count) * _UNIT_SECONDS[unit] for count, unit in _DURATION_PART.findall(text))


def duration_text(seconds: float) -> str:
    """Return a duration as the rules write it, the inverse of `duration_seconds`: `1h`, `15m`, `1h30m`, `10s`, `0.5s`."""
    whole = int(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    rest = whole + (seconds - int(seconds))
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


class BadEscape(ValueError):
    """A `\\uXXXX` escape that names half of a surrogate pair with no other half."""


def unescape(body: str) -> str:
    """Resolve escapes; a surrogate pair written as two `\\u` escapes becomes one character.

    Raises:
        BadEscape: a lone surrogate, which no UTF-8 file or JSON document can hold.
    """

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u") and len(code) == 5:
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, "\\" + code)

    if "\\" not in body:
        return body
    text = _ESCAPE.sub(replace, body)
    if _SURROGATE.search(text):
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
        lone = _SURROGATE.search(text)
        if lone:
            raise BadEscape(f"\\u{ord(lone.group()):04X}")
    return text


# Tokens that carry a value; keywords and punctuation are dropped before a
# method receives its children. The tables keep them only so that spans are exact.
_VALUE_TOKENS = frozenset(
    {
        "IDENT",
        "STRING",
        "BLOCK_STRING",
        "SQ_STRING",
        "DURATION",
        "PERCENT",
        "NUMBER",
        "INT",
        "MATCH_OP",
        "CMP_OP",
        "ARROW",
        "EQUAL",
        "RISK_LEVEL",
        "ESC_STATE",
        "HTTP_METHOD",
        "TRUE",
        "FALSE",
    }
)


class Block(NamedTuple):
    """The items between braces, with the span of the braces."""

    items: list[Any]
    span: Span


def _edge(children: list[Any], last: bool) -> Any:
    """Return the first (or last) token or node span among `children`; both have positions."""
    for child in reversed(children) if last else children:
        if child is None:
            continue
        if type(child) is Tok:
            return child
        if isinstance(child, list):
            found = _edge(child, last)
            if found is not None:
                return found
            continue
        return child.span
    return None


def _span_of(children: list[Any], path: str) -> Span | None:
    # Most rules start and end with a token, so the search for an edge is skipped.
    first = children[0] if children else None
    if type(first) is not Tok:
        first = _edge(children, last=False)
        if first is None:
            return None
    last = children[-1]
    if type(last) is not Tok:
        last = _edge(children, last=True)
    return new_span((path, first.start, last.end, first.line, first.column, last.end_line, last.end_column))


Meta = Span


def _inline(children: list[Any]) -> list[Any]:
    """Return the children of a helper rule as they are; the parent rule splices them in."""
    return children


class ToAst:
    """Build AST nodes for one file; `file_path` and `text` are set before each parse."""

    def __init__(self) -> None:
        self.file_path = "<input>"
        self.text = ""
        self.reset()

    def callback(self, rule: str, *, one_child: bool = False) -> Callable[[list[Any]], Any]:
        """Return the function that turns the children of `rule` into its node.

        A rule with a method of its name gets the span of all its children,
        and only the tokens that carry a value. Helper rules (`_name`) return
        their children for the parent to splice in, and other rules become
        properties. `one_child` promises that the rule always has exactly one
        child, which lets names and strings skip the general search for edges.
        """
        method = getattr(self, rule, None)
        if method is None:
            return _inline if rule.startswith("_") else functools.partial(self._default, rule)

        def build(children: list[Any]) -> Any:
            span = _span_of(children, self.file_path)
            value_children = [child for child in children if not (type(child) is Tok and child.type not in _VALUE_TOKENS)]
            return method(value_children, span)

        def build_from_token(children: list[Any]) -> Any:
            token = children[0]
            if type(token) is not Tok:
                return build(children)
            span = new_span((self.file_path, token.start, token.end, token.line, token.column, token.end_line, token.end_column))
            return method(children if token.type in _VALUE_TOKENS else [], span)

        return build_from_token if one_child else build

    def reset(self) -> None:
        """Forget the nesting depths of the previous file."""
        # Nesting depth of expression and route nodes, by id(); checks walk
        # these trees recursively, so `parse_text` rejects deeper ones.
        self.depths: dict[int, int] = {}
        self.too_deep: tuple[str, Span] | None = None
        self.bad_escape: tuple[str, Span] | None = None

    def _nest(self, node: Any, children: list[Any], what: str) -> Any:
        depths = self.depths
        deepest = 0
        for child in children:
            deepest = max(deepest, depths.get(id(child), 0))
        depth = depths[id(node)] = deepest + 1
        if depth > MAX_NESTING and self.too_deep is None:
            self.too_deep = (what, node.span)
        return node

    # ------------------------------------------------------------ helpers

    def _span(self, item: Span | Tok) -> Span:
        return item.span(self.file_path) if type(item) is Tok else item

    def _keyword_span(self, span: Span) -> Span:
        end = _WORD.match(self.text, span.start).end()
        return new_span((self.file_path, span.start, end, span.line, span.column, span.line, span.column + end - span.start))

    def _node(self, child: Any) -> Any:
        """Convert a leftover token into a node; keep nodes and `None` as they are."""
        if type(child) is not Tok:
            return child
        span = self._span(child)
        kind = child.type
        if kind == "DURATION":
            return ast.Duration(span=span, text=child.value, seconds=duration_seconds(child.value))
        if kind == "INT":
            return ast.Int(span=span, value=int(child.value))
        if kind == "PERCENT":
            return ast.Percent(span=span, value=float(child.value[:-1]), text=child.value)
        if kind == "NUMBER":
            return ast.Number(span=span, value=float(child.value), text=child.value)
        return ast.Name(span=span, value=child.value)

    def _args(self, children: list[Any]) -> list[Any]:
        return [self._node(child) for child in children if not (type(child) is Tok and child.type == "EQUAL")]

    def _property(self, rule: str, children: list[Any], meta: Meta) -> ast.Property:
        key_span = self._keyword_span(meta)
        key = _KEY_OVERRIDES.get(rule) or self.text[key_span.start : key_span.end]
        return ast.Property(span=meta, key=key, key_span=key_span, args=self._args(children))

    def _default(self, data: str, children: list[Any]) -> Any:
        meta = _span_of(children, self.file_path)
        children = [child for child in children if not (type(child) is Tok and child.type not in _VALUE_TOKENS)]
        if data in _TIMING or (data.startswith(_PROPERTY_PREFIXES) and data not in _NOT_PROPERTIES):
            return self._property(data, children, meta)
        raise AssertionError(f"grammar rule {data!r} has no transformer method")

    # ------------------------------------------------------------ values

    def name(self, children: list[Tok], meta: Meta) -> ast.Name:
        return ast.Name(span=meta, value=children[0].value)

    def string(self, children: list[Tok], meta: Meta) -> ast.Str:
        token = children[0]
        block = token.type == "BLOCK_STRING"
        body = token.value[3:-3] if block else token.value[1:-1]
        try:
            value = unescape(body)
        except BadEscape as error:
            if self.bad_escape is None:
                self.bad_escape = (str(error), meta)
            value = body
        return ast.Str(span=meta, value=value, block=block)

    def single_quoted(self, children: list[Tok], meta: Meta) -> ast.Str:
        return ast.Str(span=meta, value=children[0].value[1:-1], single_quoted=True)

    def secret(self, children: list[Any], meta: Meta) -> ast.Secret:
        return ast.Secret(span=meta, name=children[0])

    def boolean(self, children: list[Tok], meta: Meta) -> ast.Bool:
        return ast.Bool(span=meta, value=children[0].type == "TRUE")

    def int_lit(self, children: list[Tok], meta: Meta) -> ast.Int:
        return self._node(children[0])

    number_lit = duration_lit = percent_lit = int_lit

    def name_list(self, children: list[Any], meta: Meta) -> ast.NameList:
        return ast.NameList(span=meta, items=[item for item in children if item is not None])

    after_list = name_list

    def int_list(self, children: list[Any], meta: Meta) -> ast.IntList:
        return ast.IntList(span=meta, items=[self._node(item) for item in children if item is not None])

    def string_list(self, children: list[Any], meta: Meta) -> ast.StrList:
        return ast.StrList(span=meta, items=[item for item in children if item is not None])

    def label_list(self, children: list[Any], meta: Meta) -> ast.LabelList:
        items = [self._label_name(item) for item in children if item is not None]
        return ast.LabelList(span=meta, items=items)

    def _label_name(self, item: ast.Name | ast.Str) -> ast.LabelName:
        return ast.LabelName(span=item.span, value=item.value, quoted=isinstance(item, ast.Str))

    # ------------------------------------------------------------ expressions

    def path(self, children: list[Any], meta: Meta) -> ast.Path:
        return ast.Path(span=meta, parts=[item.value for item in children], part_spans=[item.span for item in children])

    def list_expr(self, children: list[Any], meta: Meta) -> ast.ListExpr:
        items = [self._node(item) for item in children if item is not None]
        return self._nest(ast.ListExpr(span=meta, items=items), items, "expression")

    def compare(self, children: list[Any], meta: Meta) -> ast.Compare:
        left, op, right = children
        return ast.Compare(span=meta, op=op.value, op_span=self._span(op), left=self._node(left), right=self._node(right))

    def _membership(self, children: list[Any], meta: Meta, op: str) -> ast.Compare:
        left, right = self._node(children[0]), self._node(children[-1])
        op_span = Span(
            self.file_path,
            left.span.end,
            right.span.start,
            left.span.end_line,
            left.span.end_column,
            right.span.line,
            right.span.column,
        )
        node = ast.Compare(span=meta, op=op, op_span=op_span, left=left, right=right)
        return self._nest(node, [left, right], "expression")

    def in_(self, children: list[Any], meta: Meta) -> ast.Compare:
        return self._membership(children, meta, "in")

    def not_in(self, children: list[Any], meta: Meta) -> ast.Compare:
        return self._membership(children, meta, "not in")

    def _bool_op(self, op: str, children: list[Any], meta: Meta) -> ast.BoolOp:
        items: list[Any] = []
        for child in children:
            node = self._node(child)
            # `a or b or c` parses left-nested; keep one flat node per chain.
            if isinstance(node, ast.BoolOp) and node.op == op:
                items.extend(node.items)
            else:
                items.append(node)
        return self._nest(ast.BoolOp(span=meta, op=op, items=items), items, "expression")

    def or_(self, children: list[Any], meta: Meta) -> ast.BoolOp:
        return self._bool_op("or", children, meta)

    def and_(self, children: list[Any], meta: Meta) -> ast.BoolOp:
        return self._bool_op("and", children, meta)

    def not_(self, children: list[Any], meta: Meta) -> ast.Not:
        item = self._node(children[0])
        return self._nest(ast.Not(span=meta, item=item), [item], "expression")

    # ------------------------------------------------------------ optional parts led by a keyword

    def _keyword_value(self, children: list[Any], meta: Meta) -> Any:
        return self._node(children[0])

    inhibit_on = repeat_every = escalate_to = param_pattern = step_after = _keyword_value
    retry_backoff = approval_timeout = notify_template = _keyword_value
    event_annotations = event_by = event_at = escalation_to = runbook_path = _keyword_value

    # ------------------------------------------------------------ keyword-wrapped `?` rules

    def operand(self, children: list[Any], meta: Meta) -> Any:
        return self._node(children[0])

    def test_item(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    # ------------------------------------------------------------ file

    def start(self, children: list[Any], meta: Meta) -> ast.Module:
        span = meta or Span(self.file_path, 0, 0, 1, 1, 1, 1)
        return ast.Module(span=span, decls=children)

    # ------------------------------------------------------------ settings and people

    def settings(self, children: list[Any], meta: Meta) -> ast.Settings:
        return ast.Settings(span=meta, keyword_span=self._keyword_span(meta), items=children)

    def defaults(self, children: list[Any], meta: Meta) -> ast.Defaults:
        return ast.Defaults(span=meta, keyword_span=self._keyword_span(meta), items=children)

    def use(self, children: list[Any], meta: Meta) -> ast.Use:
        return ast.Use(span=meta, keyword_span=self._keyword_span(meta), what=children[0], names=children[1])

    def environment(self, children: list[Any], meta: Meta) -> ast.Environment:
        return ast.Environment(span=meta, keyword_span=self._keyword_span(meta), name=children[0], decls=children[1:])

    def team(self, children: list[Any], meta: Meta) -> ast.Team:
        return ast.Team(span=meta, keyword_span=self._keyword_span(meta), name=children[0], items=children[1:])

    def receiver(self, children: list[Any], meta: Meta) -> ast.Receiver:
        return ast.Receiver(span=meta, keyword_span=self._keyword_span(meta), name=children[0], channels=children[1:])

    def channel(self, children: list[Any], meta: Meta) -> ast.Channel:
        kind, target, *options = children
        return ast.Channel(span=meta, kind=kind.value, kind_span=kind.span, target=target, options=options)

    def channel_kind(self, children: list[Tok], meta: Meta) -> ast.Name:
        return ast.Name(span=meta, value=self.text[meta.start : meta.end])

    def service(self, children: list[Any], meta: Meta) -> ast.Service:
        return ast.Service(span=meta, keyword_span=self._keyword_span(meta), name=children[0], items=children[1:])

    def svc_match(self, children: list[Any], meta: Meta) -> ast.Property:
        return ast.Property(span=meta, key="match", key_span=self._keyword_span(meta), args=children[0])

    # ------------------------------------------------------------ routing

    def route_root(self, children: list[Any], meta: Meta) -> ast.RouteDecl:
        span = meta
        root = self._route_from_items(span, children, is_root=True)
        root.has_block = True
        return ast.RouteDecl(span=span, keyword_span=self._keyword_span(meta), root=root)

    def _route_from_items(self, span: Span, items: list[Any], *, is_root: bool = False) -> ast.Route:
        route = ast.Route(span=span, is_root=is_root, items=[item for item in items if item is not None])
        for item in route.items:
            if isinstance(item, ast.Property) and item.key == "receiver":
                route.receiver = route.receiver or item.args[0]
        return route

    def route_block(self, children: list[Any], meta: Meta) -> Block:
        return Block(children, meta)

    def match_route(self, children: list[Any], meta: Meta) -> ast.Route:
        matchers, _arrow, receiver, block = children
        return self._child_route(meta, matchers, receiver, block)

    def plain_route(self, children: list[Any], meta: Meta) -> ast.Route:
        _arrow, receiver, block = children
        return self._child_route(meta, [], receiver, block)

    def _child_route(
        self, meta: Meta, matchers: list[ast.Matcher], receiver: ast.Name | None, block: list[Any] | None
    ) -> ast.Route:
        route = self._route_from_items(meta, block.items if block else [])
        route.matchers = matchers
        route.has_block = block is not None
        if receiver is not None:
            route.receiver = receiver
        return self._nest(route, route.children, "route")

    def matchers(self, children: list[ast.Matcher], meta: Meta) -> list[ast.Matcher]:
        return children

    def matcher(self, children: list[Any], meta: Meta) -> ast.Matcher:
        label, op, value = children
        return ast.Matcher(span=meta, label=self._label_name(label), op=op.value, op_span=self._span(op), value=value)

    def inhibit(self, children: list[Any], meta: Meta) -> ast.Inhibit:
        source, target, equal = children
        return ast.Inhibit(span=meta, keyword_span=self._keyword_span(meta), source=source, target=target, equal=equal)

    def time_interval(self, children: list[Any], meta: Meta) -> ast.TimeInterval:
        name, *items = children
        periods = [item for item in items if isinstance(item, ast.Period)]
        loose = [item for item in items if isinstance(item, ast.Property)]
        if loose:
            first, last = loose[0].span, loose[-1].span
            periods.insert(0, ast.Period(span=first.to(last), items=loose, explicit=False))
        return ast.TimeInterval(span=meta, keyword_span=self._keyword_span(meta), name=name, periods=periods)

    def period(self, children: list[Any], meta: Meta) -> ast.Period:
        return ast.Period(span=meta, items=children)

    def period_field(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    # ------------------------------------------------------------ triage

    def severity(self, children: list[Any], meta: Meta) -> ast.SeverityDecl:
        *rules, fallback = children
        return ast.SeverityDecl(span=meta, keyword_span=self._keyword_span(meta), rules=rules, fallback=fallback)

    def severity_rule(self, children: list[Any], meta: Meta) -> ast.SeverityRule:
        return ast.SeverityRule(span=meta, level=children[0], condition=self._node(children[1]))

    def else_level(self, children: list[Any], meta: Meta) -> ast.SeverityElse:
        return ast.SeverityElse(span=meta, level=children[0], classify=False, options=[])

    def else_classify(self, children: list[Any], meta: Meta) -> ast.SeverityElse:
        return ast.SeverityElse(span=meta, level=None, classify=True, options=children)

    def classify_option(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    def dedup(self, children: list[Any], meta: Meta) -> ast.Grouping:
        return ast.Grouping(span=meta, keyword_span=self._keyword_span(meta), kind="dedup", name=children[0], items=children[1:])

    def correlate(self, children: list[Any], meta: Meta) -> ast.Grouping:
        return ast.Grouping(
            span=meta, keyword_span=self._keyword_span(meta), kind="correlate", name=children[0], items=children[1:]
        )

    def dedup_item(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    correlate_item = dedup_item

    # ------------------------------------------------------------ integrations

    def pagerduty(self, children: list[Any], meta: Meta) -> ast.PagerDuty:
        return ast.PagerDuty(span=meta, keyword_span=self._keyword_span(meta), items=children)

    def pd_priority(self, children: list[Any], meta: Meta) -> ast.Property:
        return self._property("pd_priority", children, meta)

    def pd_rule(self, children: list[Any], meta: Meta) -> ast.PagerDutyRule:
        return ast.PagerDutyRule(span=meta, title=children[0], items=children[1:])

    def pd_rule_item(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    def slack(self, children: list[Any], meta: Meta) -> ast.Slack:
        return ast.Slack(span=meta, keyword_span=self._keyword_span(meta), items=children)

    def slack_item(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    def escalation(self, children: list[Any], meta: Meta) -> ast.Escalation:
        return ast.Escalation(span=meta, keyword_span=self._keyword_span(meta), name=children[0], items=children[1:])

    def escalation_step(self, children: list[Any], meta: Meta) -> ast.EscalationStep:
        delay, state, action = children
        return ast.EscalationStep(
            span=meta, delay=self._node(delay), state=state.value, state_span=self._span(state), action=action
        )

    def esc_action(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    def esc_for_severity(self, children: list[Any], meta: Meta) -> ast.EscalationSeverityBlock:
        return ast.EscalationSeverityBlock(span=meta, levels=children[0], steps=children[1:])

    def source(self, children: list[Any], meta: Meta) -> ast.Source:
        items = [item for item in children[1:] if isinstance(item, ast.Property)]
        mappings = [mapping for item in children[1:] if isinstance(item, list) for mapping in item]
        return ast.Source(span=meta, keyword_span=self._keyword_span(meta), name=children[0], items=items, mappings=mappings)

    def source_item(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    def src_map(self, children: list[Any], meta: Meta) -> list[ast.FieldMapping]:
        return children

    def hmac_option(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    def field_mapping(self, children: list[Any], meta: Meta) -> ast.FieldMapping:
        return ast.FieldMapping(span=meta, target=children[0], value=self._node(children[-1]))

    # ------------------------------------------------------------ actions and runbooks

    def action(self, children: list[Any], meta: Meta) -> ast.Action:
        name, *rest = children
        params = [item for item in rest if isinstance(item, ast.Param)]
        items = [item for item in rest if item is not None and not isinstance(item, ast.Param)]
        return ast.Action(span=meta, keyword_span=self._keyword_span(meta), name=name, params=params, items=items)

    def param(self, children: list[Any], meta: Meta) -> ast.Param:
        name, type_name, _equal, default, pattern = children
        return ast.Param(span=meta, name=name, type=type_name, default=self._node(default), pattern=pattern)

    def runbook(self, children: list[Any], meta: Meta) -> ast.Runbook:
        name, title, *items = children
        return ast.Runbook(span=meta, keyword_span=self._keyword_span(meta), name=name, title=title, items=items)

    def parallel(self, children: list[Any], meta: Meta) -> ast.Parallel:
        return ast.Parallel(span=meta, steps=children)

    def step(self, children: list[Any], meta: Meta) -> ast.Step:
        name, after, *items = children
        return ast.Step(span=meta, name=name, after=after, items=items)

    def step_attr(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    def _step_kind(self, kind: str, children: list[Any], meta: Meta) -> ast.StepKind:
        args = self._args(children)
        options = [item for item in args if isinstance(item, ast.Property)]
        args = [item for item in args if not isinstance(item, ast.Property)]
        return ast.StepKind(span=meta, kind=kind, kind_span=self._keyword_span(meta), args=args, options=options)

    def sk_run(self, children: list[Any], meta: Meta) -> ast.StepKind:
        return self._step_kind("run", children, meta)

    def sk_http(self, children: list[Any], meta: Meta) -> ast.StepKind:
        return self._step_kind("http", children, meta)

    def sk_query(self, children: list[Any], meta: Meta) -> ast.StepKind:
        return self._step_kind("query", children, meta)

    def sk_notify(self, children: list[Any], meta: Meta) -> ast.StepKind:
        return self._step_kind("notify", children, meta)

    def sk_approve(self, children: list[Any], meta: Meta) -> ast.StepKind:
        return self._step_kind("approve", children, meta)

    def sk_wait(self, children: list[Any], meta: Meta) -> ast.StepKind:
        return self._step_kind("wait", children, meta)

    def sk_set(self, children: list[Any], meta: Meta) -> ast.StepKind:
        return self._step_kind("set", children, meta)

    def sk_report(self, children: list[Any], meta: Meta) -> ast.StepKind:
        return self._step_kind("report", children, meta)

    def sk_assist(self, children: list[Any], meta: Meta) -> ast.StepKind:
        return self._step_kind("assist", children, meta)

    def http_option(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    def action_call(self, children: list[Any], meta: Meta) -> ast.ActionCall:
        # `?call_arg` inlines a bare literal, so wrap those here: every argument is a `CallArg`.
        args = [
            item if isinstance(item, ast.CallArg) else ast.CallArg(span=item.span, name=None, value=self._node(item))
            for item in children[1:]
        ]
        return ast.ActionCall(span=meta, action=children[0], args=args)

    def call_arg(self, children: list[Any], meta: Meta) -> ast.CallArg:
        return ast.CallArg(span=meta, name=None, value=self._node(children[0]))

    def call_word(self, children: list[Any], meta: Meta) -> ast.CallArg:
        return ast.CallArg(span=meta, name=None, value=children[0])

    def call_named(self, children: list[Any], meta: Meta) -> ast.CallArg:
        return ast.CallArg(span=meta, name=children[0], value=self._node(children[-1]))

    # ------------------------------------------------------------ templates and tests

    def template(self, children: list[Any], meta: Meta) -> ast.Template:
        return ast.Template(span=meta, keyword_span=self._keyword_span(meta), name=children[0], locales=children[1:])

    def template_locale(self, children: list[Any], meta: Meta) -> ast.TemplateLocale:
        return ast.TemplateLocale(span=meta, locale=children[0], fields=children[1:])

    def template_field(self, children: list[Any], meta: Meta) -> ast.TemplateField:
        return ast.TemplateField(span=meta, name=children[0], value=children[1])

    def test(self, children: list[Any], meta: Meta) -> ast.Test:
        return ast.Test(span=meta, keyword_span=self._keyword_span(meta), title=children[0], items=children[1:])

    def label_pair(self, children: list[Any], meta: Meta) -> ast.LabelPair:
        return ast.LabelPair(span=meta, name=self._label_name(children[0]), value=children[-1])

    def _test_pairs(self, key: str, children: list[Any], meta: Meta) -> ast.TestItem:
        pairs = [item for item in children if item is not None]
        return ast.TestItem(span=meta, key=key, key_span=self._keyword_span(meta), pairs=pairs)

    def test_alert(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._test_pairs("alert", children, meta)

    def test_annotations(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._test_pairs("annotations", children, meta)

    def test_also_firing(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._test_pairs("also_firing", children, meta)

    def test_at(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return ast.TestItem(span=meta, key="at", key_span=self._keyword_span(meta), args=children)

    def label_set(self, children: list[Any], meta: Meta) -> Block:
        return Block([item for item in children if item is not None], meta)

    def _event(self, kind: str, labels: Block, meta: Meta, at: Any, **extra: Any) -> ast.ScenarioEvent:
        return ast.ScenarioEvent(
            span=meta,
            kind=kind,
            kind_span=self._keyword_span(meta),
            labels=labels.items,
            labels_span=labels.span,
            at=self._node(at),
            **extra,
        )

    def test_fire(self, children: list[Any], meta: Meta) -> ast.ScenarioEvent:
        labels, annotations, at = children
        if annotations is None:
            return self._event("fire", labels, meta, at)
        return self._event("fire", labels, meta, at, annotations=annotations.items, annotations_span=annotations.span)

    def test_resolve(self, children: list[Any], meta: Meta) -> ast.ScenarioEvent:
        labels, by, at = children
        return self._event("resolve", labels, meta, at, by=by)

    def test_ack(self, children: list[Any], meta: Meta) -> ast.ScenarioEvent:
        labels, by, at = children
        return self._event("ack", labels, meta, at, by=by)

    def test_until(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return ast.TestItem(span=meta, key="until", key_span=self._keyword_span(meta), args=self._args(children))

    def expectation(self, children: list[Any], meta: Meta) -> Any:
        return children[0]

    def _expect(self, key: str, children: list[Any], meta: Meta) -> ast.TestItem:
        return ast.TestItem(span=meta, key=key, key_span=self._keyword_span(meta), args=self._args(children))

    def expect_receivers(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect receivers", children, meta)

    def expect_severity(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect severity", children, meta)

    def expect_inhibited(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect inhibited", children, meta)

    def expect_not_inhibited(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect not inhibited", children, meta)

    def expect_runbooks(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect runbooks", children, meta)

    def expect_group_by(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect group_by", children, meta)

    def expect_incidents(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect incidents", children, meta)

    def expect_page(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect page", children, meta)

    def expect_no_page(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect no page", children, meta)

    def expect_escalation(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect escalation", children, meta)

    def expect_no_escalation(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect no escalation", children, meta)

    def expect_runbook(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect runbook", children, meta)

    def expect_no_runbook(self, children: list[Any], meta: Meta) -> ast.TestItem:
        return self._expect("expect no runbook", children, meta)
