"""Build the symbol table and report names declared twice."""

from __future__ import annotations

from compiler import ast
from compiler.checks.context import Symbols
from compiler.diagnostics import DiagnosticSink, Label
from compiler.loader import Project

_NAMED_TABLES = {
    ast.Service: "services",
    ast.TimeInterval: "time_intervals",
    ast.Escalation: "escalations",
    ast.Source: "sources",
    ast.Action: "actions",
    ast.Template: "templates",
}
_LISTS = {
    ast.RouteDecl: "routes",
    ast.SeverityDecl: "severities",
    ast.Settings: "settings",
    ast.Defaults: "defaults",
    ast.Inhibit: "inhibits",
    ast.PagerDuty: "pagerduty",
    ast.Slack: "slack",
    ast.Test: "tests",
    ast.Use: "uses",
}


def build_symbols(project: Project, sink: DiagnosticSink) -> Symbols:
    symbols = Symbols()
    # The user's declarations may shadow the standard library's, so they go in first.
    ordered = [decl for decl in project.decls if not project.is_stdlib(decl)]
    stdlib = [decl for decl in project.decls if project.is_stdlib(decl)]
    for decl in ordered:
        _add(symbols, decl, sink, from_stdlib=False)
    for decl in stdlib:
        _add(symbols, decl, sink, from_stdlib=True)
    return symbols


def _add(symbols: Symbols, decl: ast.Decl, sink: DiagnosticSink, *, from_stdlib: bool) -> None:
    kind = type(decl)
    if kind in _LISTS:
        if not from_stdlib:
            getattr(symbols, _LISTS[kind]).append(decl)
        return
    if isinstance(decl, (ast.Team, ast.Receiver)):
        _insert(symbols.receivers, decl, decl.kind, sink, from_stdlib)
        if isinstance(decl, ast.Team) and symbols.receivers.get(decl.name.value) is decl:
            symbols.teams[decl.name.value] = decl
        return
    if isinstance(decl, ast.Runbook):
        _insert(symbols.stdlib_runbooks if from_stdlib else symbols.runbooks, decl, "runbook", sink, from_stdlib)
        return
    if isinstance(decl, ast.Grouping):
        if decl.name is not None:
            _insert(symbols.groupings, decl, decl.kind, sink, from_stdlib)
        return
    table_name = _NAMED_TABLES.get(kind)
    if table_name is not None:
        _insert(getattr(symbols, table_name), decl, decl.kind, sink, from_stdlib)


def _insert(table: dict, decl: ast.Decl, kind: str, sink: DiagnosticSink, from_stdlib: bool) -> None:
    name = decl.decl_name
    assert name is not None, "named declarations always carry a name"
    first = table.get(name.value)
    if first is None:
        table[name.value] = decl
        return
    if from_stdlib:
        return  # a project declaration of the same name replaces the standard library's
    first_kind = first.kind
    message = (
        f"{kind} `{name.value}` is declared twice"
        if first_kind == kind
        else f"`{name.value}` is declared twice, as a {first_kind} and as a {kind}"
    )
    sink.error(
        "IR0204",
        message,
        name.span,
        label="declared again here",
        labels=(Label(first.decl_name.span, "first declared here"),),
        help=(
            "rename one of them or merge the two declarations"
            if first_kind == kind
            else "teams and receivers share one namespace because both become Alertmanager receivers; rename one"
        ),
    )
