"""The compiler's entry points: check a project and get its diagnostics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compiler.checks import run_checks
from compiler.checks.context import Context
from compiler.collector import collector_paused
from compiler.diagnostics import Diagnostic, DiagnosticSink, Severity
from compiler.errors import CompileFailed

if TYPE_CHECKING:
    from compiler.ir import Ruleset
from compiler.loader import Project, load_project, load_text


@dataclass(slots=True)
class CheckResult:
    """The loaded project, its diagnostics in file order, and the checker's symbols when it ran."""

    project: Project
    diagnostics: list[Diagnostic]
    context: Context | None

    @property
    def has_errors(self) -> bool:
        return any(item.severity is Severity.ERROR for item in self.diagnostics)

    def ruleset(self) -> Ruleset:
        """Lower the checked project to the IR.

        Raises:
            CompileFailed: the rules have errors.
        """
        if self.has_errors or self.context is None:
            raise CompileFailed([item for item in self.diagnostics if item.severity is Severity.ERROR])
        from compiler.lower import lower

        with collector_paused():
            return lower(self.context)


def check_path(path: Path, environment: str | None = None, *, with_stdlib: bool = True) -> CheckResult:
    """Load and check the project at `path` (a folder or one file).

    Example:
        result = check_path(Path("examples/production"), "production")
        assert not result.has_errors
    """
    sink = DiagnosticSink()
    with collector_paused():
        project = load_project(path, environment, sink, with_stdlib=with_stdlib)
        return _check(project, sink)


def compile_rules(path: Path, environment: str | None = None) -> Ruleset:
    """Check the project at `path` and return its ruleset.

    Raises:
        CompileFailed: the rules have errors, listed in its `diagnostics`.
    """
    return check_path(path, environment).ruleset()


def check_text(text: str, path: str = "<input>") -> CheckResult:
    """Check one in-memory file as a whole project, without the standard library."""
    sink = DiagnosticSink()
    project = load_text(text, path, sink)
    return _check(project, sink)


def _check(project: Project, sink: DiagnosticSink) -> CheckResult:
    context = None
    # After a syntax error, later checks would only repeat its consequences
    # (a declaration that failed to parse looks undeclared), so they wait.
    if project.syntax_ok and not sink.has_errors:
        context = run_checks(project, sink)
    return CheckResult(project=project, diagnostics=sink.sorted(), context=context)
