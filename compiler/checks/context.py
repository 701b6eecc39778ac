"""The context every check receives: the project, the diagnostics sink and the symbol table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from compiler import ast
from compiler.diagnostics import DiagnosticSink, Label
from compiler.loader import Project
from compiler.span import Span
from compiler.suggest import closest

if TYPE_CHECKING:
    from compiler.stepgraph import StepGraph

SEVERITY_LEVELS = ("critical", "high", "medium", "low")


@dataclass(slots=True)
class Symbols:
    """Declarations by kind and name. Teams are receivers too, so both sit in `receivers`."""

    receivers: dict[str, ast.Team | ast.Receiver] = field(default_factory=dict)
    teams: dict[str, ast.Team] = field(default_factory=dict)
    services: dict[str, ast.Service] = field(default_factory=dict)
    time_intervals: dict[str, ast.TimeInterval] = field(default_factory=dict)
    escalations: dict[str, ast.Escalation] = field(default_factory=dict)
    sources: dict[str, ast.Source] = field(default_factory=dict)
    actions: dict[str, ast.Action] = field(default_factory=dict)
    runbooks: dict[str, ast.Runbook] = field(default_factory=dict)
    stdlib_runbooks: dict[str, ast.Runbook] = field(default_factory=dict)
    templates: dict[str, ast.Template] = field(default_factory=dict)
    groupings: dict[str, ast.Grouping] = field(default_factory=dict)
    routes: list[ast.RouteDecl] = field(default_factory=list)
    severities: list[ast.SeverityDecl] = field(default_factory=list)
    settings: list[ast.Settings] = field(default_factory=list)
    defaults: list[ast.Defaults] = field(default_factory=list)
    inhibits: list[ast.Inhibit] = field(default_factory=list)
    pagerduty: list[ast.PagerDuty] = field(default_factory=list)
    slack: list[ast.Slack] = field(default_factory=list)
    tests: list[ast.Test] = field(default_factory=list)
    uses: list[ast.Use] = field(default_factory=list)
    # Every reference by name that resolved, for the "never used" warnings.
    used: set[tuple[str, str]] = field(default_factory=set)


@dataclass(slots=True)
class Context:
    project: Project
    sink: DiagnosticSink
    symbols: Symbols
    # Names offered as the fix for an unknown name; the usage checks do not
    # call them unused, since the misspelt reference was meant for them.
    suggested: set[str] = field(default_factory=set)
    # Step graphs by the id() of their runbook, which each graph keeps alive.
    _step_graphs: dict[int, StepGraph] = field(default_factory=dict)
    _user_decls: list[ast.Decl] | None = None

    def is_stdlib(self, decl: ast.Decl) -> bool:
        return self.project.is_stdlib(decl)

    def project_decls(self) -> Iterator[ast.Decl]:
        """Yield the declarations of the user's files, not the standard library's."""
        if self._user_decls is None:
            self._user_decls = [decl for decl in self.project.decls if not self.project.is_stdlib(decl)]
        yield from self._user_decls

    def step_graph(self, runbook: ast.Runbook) -> StepGraph:
        """Return the step graph of `runbook`, built once for every check and for lowering, which only read it."""
        graph = self._step_graphs.get(id(runbook))
        if graph is None:
            from compiler.stepgraph import build_step_graph

            graph = build_step_graph(runbook, self.symbols.actions)
            self._step_graphs[id(runbook)] = graph
        return graph

    def resolve(self, kind: str, name: ast.Name, table: dict[str, object], *, what: str = "") -> object | None:
        """Look up `name` in `table`; report an unknown name with the closest known one."""
        found = table.get(name.value)
        if found is not None:
            self.symbols.used.add((kind, name.value))
            return found
        self.unknown(kind, name.value, name.span, table.keys(), what=what)
        return None

    def unknown(self, kind: str, value: str, span: Span, known: object, *, what: str = "") -> None:
        where = f" in {what}" if what else ""
        other = self._declared_as_other_kind(kind, value)
        if other is not None:
            other_kind, other_span = other
            self.sink.error(
                "IR0203",
                f"`{value}`{where} is a {other_kind}, not a {kind}",
                span,
                label=f"a {kind} is needed here",
                labels=(Label(other_span, f"declared as a {other_kind} here"),),
                help=f"name a {kind} here" + (f", or declare `{value}` as a {kind}" if kind in _DECLARE_HELP else ""),
            )
            return
        known_names = list(known)  # type: ignore[call-overload]
        suggestion = closest(value, known_names)
        if suggestion:
            self.suggested.add(suggestion)
            article = "an" if kind[0] in "aeiou" else "a"
            help_text = f"{article} {kind} with a similar name exists: `{suggestion}`"
        elif kind == "runbook" and what == "`use runbooks`":
            help_text = "the standard library offers " + ", ".join(f"`{name}`" for name in sorted(known_names))
        else:
            help_text = _DECLARE_HELP.get(kind, "").replace("{name}", value)
        message = f"unknown {kind} `{value}`{where}"
        self.sink.error("IR0203", message, span, label=f"no {kind} of this name is declared", help=help_text)

    def _declared_as_other_kind(self, kind: str, value: str) -> tuple[str, Span] | None:
        """Return the kind and span of a declaration named `value` that is not a `kind`."""
        symbols = self.symbols
        tables = {
            "receiver": symbols.receivers,
            "service": symbols.services,
            "time_interval": symbols.time_intervals,
            "escalation": symbols.escalations,
            "action": symbols.actions,
            "runbook": symbols.runbooks,
            "template": symbols.templates,
            "source": symbols.sources,
        }
        for table_kind, table in tables.items():
            decl = table.get(value)
            if decl is None:
                continue
            # A team is a receiver too: only a plain receiver is the wrong kind for a team.
            declared_kind = decl.kind if table_kind == "receiver" else table_kind
            if declared_kind == kind or (kind == "receiver" and table_kind == "receiver"):
                continue
            return declared_kind, decl.decl_name.span
        return None

    def duplicate(self, kind: str, name: ast.Name, first: ast.Name | Span) -> None:
        first_span = first.span if isinstance(first, ast.Name) else first
        self.sink.error(
            "IR0204",
            f"{kind} `{name.value}` is declared twice",
            name.span,
            label="declared again here",
            labels=(Label(first_span, "first declared here"),),
            help="rename one of them or merge the two declarations",
        )


_DECLARE_HELP = {
    "team": "declare it with `team {name} { ... }`",
    "receiver": "declare it with `receiver {name} { ... }` or `team {name} { ... }`",
    "service": "declare it with `service {name} { team TEAM }`",
    "time_interval": 'declare it with `time_interval {name} { times ["09:00-17:00"] }`',
    "escalation": "declare it with `escalation {name} { after 10m unacknowledged page RECEIVER }`",
    "action": "declare it with `action {name}(PARAM: string) { run [...] }`",
    "runbook": 'declare it with `runbook {name} "title" { step ... }`',
    "template": 'declare it with `template {name} { en { title "..." } }`',
    "source": 'declare it with `source {name} { path "/hooks/{name}" }`',
}
