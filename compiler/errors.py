"""Exceptions for bugs and I/O; user mistakes in rules are diagnostics, not exceptions."""

from __future__ import annotations

from compiler.diagnostics import Diagnostic


class IrulesError(Exception):
    """Base of every exception irules raises on purpose."""


class CompileFailed(IrulesError):
    """The rules have errors; `diagnostics` lists them in file order."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(f"{len(diagnostics)} problem(s) in the rules")
        self.diagnostics = diagnostics


class TargetError(IrulesError):
    """An artifact could not be produced from a ruleset that passed the checker."""
