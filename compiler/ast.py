"""The syntax tree: what the user wrote, with a source span on every node.

Nodes keep optional parts as `None` and keep properties in source order, so
the formatter can print them back and the checker can point at each one.
Resolution of names, defaults and inheritance happens later, in lowering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compiler.span import Span

# ---------------------------------------------------------------- values


@dataclass(slots=True, kw_only=True)
class Node:
    span: Span


@dataclass(slots=True, kw_only=True)
class Name(Node):
    value: str


@dataclass(slots=True, kw_only=True)
class Str(Node):
    """A string literal; `block` marks a triple-quoted string."""

    value: str
    block: bool = False
    single_quoted: bool = False


@dataclass(slots=True, kw_only=True)
class Secret(Node):
    name: Str


@dataclass(slots=True, kw_only=True)
class Int(Node):
    value: int


@dataclass(slots=True, kw_only=True)
class Number(Node):
    value: float
    text: str


@dataclass(slots=True, kw_only=True)
class Duration(Node):
    """A duration such as `1h30m`; `seconds` is exact for every unit but `ms`."""

    text: str
    seconds: float


@dataclass(slots=True, kw_only=True)
class Percent(Node):
    """A percentage; `value` is the written number, so `90%` has value 90."""

    value: float
    text: str


@dataclass(slots=True, kw_only=True)
class Bool(Node):
    value: bool


@dataclass(slots=True, kw_only=True)
class NameList(Node):
    items: list[Name]


@dataclass(slots=True, kw_only=True)
class StrList(Node):
    items: list[Str]


@dataclass(slots=True, kw_only=True)
class IntList(Node):
    items: list[Int]


@dataclass(slots=True, kw_only=True)
class LabelName(Node):
    """A label name, quoted when it is not a plain identifier."""

    value: str
    quoted: bool = False


@dataclass(slots=True, kw_only=True)
class LabelList(Node):
    items: list[LabelName]


Literal = Str | Int | Number | Duration | Percent | Bool
Value = Str | Secret


@dataclass(slots=True, kw_only=True)
class Property(Node):
    """A keyword and its arguments, such as `group_wait 10s` or `retry 3 backoff 5s`.

    `key` is the keyword as the grammar names it. `args` contains the argument
    nodes in source order (a `None` stands for an omitted optional argument).
    """

    key: str
    key_span: Span
    args: list[object] = field(default_factory=list)


# ---------------------------------------------------------------- expressions


@dataclass(slots=True, kw_only=True)
class Path(Node):
    """A field access such as `label.severity`, `steps.top_pods.ok` or `label["a.b"]`."""

    parts: list[str]
    part_spans: list[Span]


@dataclass(slots=True, kw_only=True)
class ListExpr(Node):
    items: list[Expr]


@dataclass(slots=True, kw_only=True)
class Compare(Node):
    """A binary comparison; `op` is one of `== != < <= > >= =~ !~ in not in`."""

    op: str
    op_span: Span
    left: Expr
    right: Expr


@dataclass(slots=True, kw_only=True)
class BoolOp(Node):
    op: str
    items: list[Expr]


@dataclass(slots=True, kw_only=True)
class Not(Node):
    item: Expr


Expr = Literal | Path | ListExpr | Compare | BoolOp | Not


# ---------------------------------------------------------------- routing


@dataclass(slots=True, kw_only=True)
class Matcher(Node):
    label: LabelName
    op: str
    op_span: Span
    value: Str


@dataclass(slots=True, kw_only=True)
class Route(Node):
    """One node of the route tree; the root has no matchers and `is_root` set."""

    is_root: bool = False
    matchers: list[Matcher] = field(default_factory=list)
    receiver: Name | None = None
    has_block: bool = False
    items: list[Property | Route] = field(default_factory=list)

    @property
    def children(self) -> list[Route]:
        return [item for item in self.items if isinstance(item, Route)]

    @property
    def properties(self) -> list[Property]:
        return [item for item in self.items if isinstance(item, Property)]


# ---------------------------------------------------------------- declarations


@dataclass(slots=True, kw_only=True)
class Decl(Node):
    keyword_span: Span

    kind = "declaration"

    @property
    def decl_name(self) -> Name | None:
        return getattr(self, "name", None)


@dataclass(slots=True, kw_only=True)
class Settings(Decl):
    kind = "settings"
    items: list[Property]


@dataclass(slots=True, kw_only=True)
class Defaults(Decl):
    kind = "defaults"
    items: list[Property]


@dataclass(slots=True, kw_only=True)
class Environment(Decl):
    kind = "environment"
    name: Name
    decls: list[Decl]


@dataclass(slots=True, kw_only=True)
class Channel(Node):
    """A notification channel of a team or receiver: `slack "#ops" template critical`."""

    kind: str
    kind_span: Span
    target: Value | None
    options: list[Property]


@dataclass(slots=True, kw_only=True)
class Team(Decl):
    kind = "team"
    name: Name
    items: list[Channel | Property]

    @property
    def channels(self) -> list[Channel]:
        return [item for item in self.items if isinstance(item, Channel)]


@dataclass(slots=True, kw_only=True)
class Receiver(Decl):
    kind = "receiver"
    name: Name
    channels: list[Channel]


@dataclass(slots=True, kw_only=True)
class Service(Decl):
    kind = "service"
    name: Name
    items: list[Property]


@dataclass(slots=True, kw_only=True)
class RouteDecl(Decl):
    kind = "route"
    root: Route


@dataclass(slots=True, kw_only=True)
class Inhibit(Decl):
    kind = "inhibit"
    source: list[Matcher]
    target: list[Matcher]
    equal: LabelList | None


@dataclass(slots=True, kw_only=True)
class Period(Node):
    """One entry of a time interval; every field must match for the period to match."""

    items: list[Property]
    explicit: bool = True


@dataclass(slots=True, kw_only=True)
class TimeInterval(Decl):
    kind = "time_interval"
    name: Name
    periods: list[Period]


@dataclass(slots=True, kw_only=True)
class SeverityRule(Node):
    level: Name
    condition: Expr


@dataclass(slots=True, kw_only=True)
class SeverityElse(Node):
    """The fallback: a fixed level, or `classify` with its options."""

    level: Name | None
    classify: bool
    options: list[Property]


@dataclass(slots=True, kw_only=True)
class SeverityDecl(Decl):
    kind = "severity"
    rules: list[SeverityRule]
    fallback: SeverityElse | None


@dataclass(slots=True, kw_only=True)
class Grouping(Decl):
    """A `dedup` or `correlate` block, named by `kind`."""

    kind: str
    name: Name | None
    items: list[Property]


@dataclass(slots=True, kw_only=True)
class PagerDutyRule(Node):
    title: Str
    items: list[Property]


@dataclass(slots=True, kw_only=True)
class PagerDuty(Decl):
    kind = "pagerduty"
    items: list[Property | PagerDutyRule]


@dataclass(slots=True, kw_only=True)
class Slack(Decl):
    kind = "slack"
    items: list[Property]


@dataclass(slots=True, kw_only=True)
class EscalationStep(Node):
    delay: Duration
    state: str
    state_span: Span
    action: Property


@dataclass(slots=True, kw_only=True)
class EscalationSeverityBlock(Node):
    levels: NameList
    steps: list[EscalationStep]


@dataclass(slots=True, kw_only=True)
class Escalation(Decl):
    kind = "escalation"
    name: Name
    items: list[EscalationStep | EscalationSeverityBlock | Property]


@dataclass(slots=True, kw_only=True)
class FieldMapping(Node):
    target: Path
    value: Expr


@dataclass(slots=True, kw_only=True)
class Source(Decl):
    kind = "source"
    name: Name
    items: list[Property]
    mappings: list[FieldMapping]


@dataclass(slots=True, kw_only=True)
class Param(Node):
    name: Name
    type: Name
    default: Literal | None
    pattern: Str | None


@dataclass(slots=True, kw_only=True)
class StepKind(Node):
    """The primitive a step performs: `run`, `http`, `query`, `notify`, `approve`, `wait`, `set`, `report`, `assist`."""

    kind: str
    kind_span: Span
    args: list[object]
    options: list[Property] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class CallArg(Node):
    name: Name | None
    value: Literal | Name


@dataclass(slots=True, kw_only=True)
class ActionCall(Node):
    action: Name
    args: list[CallArg]


StepItem = StepKind | ActionCall | Property


@dataclass(slots=True, kw_only=True)
class Action(Decl):
    kind = "action"
    name: Name
    params: list[Param]
    items: list[StepItem]


@dataclass(slots=True, kw_only=True)
class Step(Node):
    name: Name
    after: NameList | None
    items: list[StepItem]


@dataclass(slots=True, kw_only=True)
class Parallel(Node):
    steps: list[Step]


@dataclass(slots=True, kw_only=True)
class Runbook(Decl):
    kind = "runbook"
    name: Name
    title: Str | None
    items: list[Property | Step | Parallel]


@dataclass(slots=True, kw_only=True)
class TemplateField(Node):
    name: Name
    value: Str


@dataclass(slots=True, kw_only=True)
class TemplateLocale(Node):
    locale: Name
    fields: list[TemplateField]


@dataclass(slots=True, kw_only=True)
class Template(Decl):
    kind = "template"
    name: Name
    locales: list[TemplateLocale]


@dataclass(slots=True, kw_only=True)
class LabelPair(Node):
    name: LabelName
    value: Str


@dataclass(slots=True, kw_only=True)
class TestItem(Node):
    """One line of a test block: an input (`alert`, `annotations`, `also_firing`, `at`, `until`) or an `expect`.

    `key` names the line as written (`expect page`, `expect no runbook`), and
    `args` contains its values in order, with `None` for an omitted optional
    part: `expect page ops at 30s` has the arguments `ops`, `None` (no event)
    and `30s`.
    """

    key: str
    key_span: Span
    pairs: list[LabelPair] = field(default_factory=list)
    args: list[object] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class ScenarioEvent(Node):
    """An input of a scenario test: `fire`, `resolve` or `ack` of an alert, at an offset or a moment.

    `resolve` with `by` is a person resolving the incident that contains the
    alert. Without `by`, the alert's source reports it resolved.
    """

    kind: str
    kind_span: Span
    labels: list[LabelPair]
    labels_span: Span
    annotations: list[LabelPair] | None = None
    annotations_span: Span | None = None
    by: Str | None = None
    at: Duration | Str


# The lines that make a test block a scenario, besides its `ScenarioEvent`s.
SCENARIO_KEYS = frozenset(
    {
        "until",
        "expect incidents",
        "expect page",
        "expect no page",
        "expect escalation",
        "expect no escalation",
        "expect runbook",
        "expect no runbook",
    }
)


@dataclass(slots=True, kw_only=True)
class Test(Decl):
    kind = "test"
    title: Str
    items: list[TestItem | ScenarioEvent]

    @property
    def scenario_items(self) -> list[TestItem | ScenarioEvent]:
        """Return the events and scenario lines. A test that has any of them is a scenario."""
        return [item for item in self.items if isinstance(item, ScenarioEvent) or item.key in SCENARIO_KEYS]


@dataclass(slots=True, kw_only=True)
class Use(Decl):
    """`use runbooks [rb-001]`: turn on declarations of the standard library."""

    kind = "use"
    what: Name
    names: NameList


@dataclass(slots=True, kw_only=True)
class Module(Node):
    """The declarations of one file, in source order, with its comments for the formatter."""

    decls: list[Decl]
    comments: list[tuple[int, str]] = field(default_factory=list)
