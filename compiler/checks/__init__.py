"""The checker: every check runs on the loaded project and reports into one sink.

Each check is a function `check_<what>(context)` that appends diagnostics and
never raises for a user error. `run_checks` runs them all, so one run shows
every problem.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from compiler.checks.context import Context
from compiler.checks.symbols import build_symbols
from compiler.diagnostics import DiagnosticSink
from compiler.loader import Project

Check = Callable[[Context], None]


# Check modules in the order they run. Each defines `CHECKS`, a list of
# functions taking a `Context`, and may define `CODES` for its diagnostics.
CHECK_MODULES = (
    "names",
    "values",
    "routing",
    "expressions",
    "runbooks",
    "safety",
    "templates",
    "scenarios",
    "usage",
)


def check_modules() -> list[ModuleType]:
    return [importlib.import_module(f"compiler.checks.{name}") for name in CHECK_MODULES]


def all_checks() -> list[Check]:
    """Return every check in the order it runs."""
    checks: list[Check] = []
    for module in check_modules():
        checks.extend(module.CHECKS)
    return checks


def run_checks(project: Project, sink: DiagnosticSink) -> Context:
    context = Context(project=project, sink=sink, symbols=build_symbols(project, sink))
    for check in all_checks():
        check(context)
    return context
