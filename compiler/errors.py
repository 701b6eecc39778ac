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
    """An artifact could not be produced from a ruleset that passed the checker.

    `receiver` names the receiver or team at fault and `channel` the kind of its
    channel, when the problem has one, so that `irules check` can point at it.
    """

    def __init__(self, message: str, *, receiver: str | None = None, channel: str | None = None) -> None:
        super().__init__(message)
        self.receiver = receiver
        self.channel = channel
