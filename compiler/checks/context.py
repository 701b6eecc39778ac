"""What every check receives: the project, the diagnostics sink and the symbol table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from compiler import ast
from compiler.diagnostics import DiagnosticSink, Label
from compiler.loader import Project
from compiler.span import Span
from compiler.suggest import closest

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

    def is_stdlib(self, decl: ast.Decl) -> bool:
        return self.project.is_stdlib(decl)

    def project_decls(self) -> Iterator[ast.Decl]:
        """Yield the declarations of the user's files, not the standard library's."""
        for decl in self.project.decls:
            if not self.project.is_stdlib(decl):
                yield decl

    def resolve(self, kind: str, name: ast.Name, table: dict[str, object], *, what: str = "") -> object | None:
        """Look up `name` in `table`; report an unknown name with the closest known one."""
        found = table.get(name.value)
        if found is not None:
            self.symbols.used.add((kind, name.value))
            return found
        self.unknown(kind, name.value, name.span, table.keys(), what=what)
        return None

    def unknown(self, kind: str, value: str, span: Span, known: object, *, what: str = "") -> None:
        suggestion = closest(value, list(known))  # type: ignore[arg-type]
        if suggestion:
            help_text = f"a {kind} with a similar name exists: `{suggestion}`"
        else:
            help_text = f"declare it with `{kind} {value} {{ ... }}`" if kind in _DECLARABLE else ""
        message = f"unknown {kind} `{value}`" + (f" in {what}" if what else "")
        self.sink.error("IR0203", message, span, label=f"no {kind} of this name is declared", help=help_text)

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


_DECLARABLE = {"team", "receiver", "service", "time_interval", "escalation", "action", "runbook", "template", "source"}
