"""Diagnostics: what the compiler reports about the user's rules.

A diagnostic is data (severity, code, message, primary span, labelled extra
spans, help). Checks append diagnostics to a `DiagnosticSink` and never raise
for a user error; the CLI renders them as text or JSON.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from compiler.span import SourceFile, Span


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Label:
    """A secondary span with a short note, such as the first declaration of a duplicate."""

    span: Span
    message: str


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in the rules, pointing at the smallest span that shows it."""

    severity: Severity
    code: str
    message: str
    span: Span | None
    label: str = ""
    labels: tuple[Label, ...] = ()
    help: str = ""

    def sort_key(self) -> tuple[str, int, int, str]:
        if self.span is None:
            return ("", 0, 0, self.code)
        return (self.span.path, self.span.start, self.span.end, self.code)

    def as_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "span": self.span.as_dict() if self.span else None,
            "label": self.label,
            "labels": [{"span": extra.span.as_dict(), "message": extra.message} for extra in self.labels],
            "help": self.help,
        }


@dataclass(slots=True)
class DiagnosticSink:
    """Collects diagnostics from every phase so that all problems show at once."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, span: Span | None, **extra: object) -> None:
        self.items.append(Diagnostic(Severity.ERROR, code, message, span, **extra))  # type: ignore[arg-type]

    def warning(self, code: str, message: str, span: Span | None, **extra: object) -> None:
        self.items.append(Diagnostic(Severity.WARNING, code, message, span, **extra))  # type: ignore[arg-type]

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.items.extend(diagnostics)

    @property
    def has_errors(self) -> bool:
        return any(item.severity is Severity.ERROR for item in self.items)

    def sorted(self) -> list[Diagnostic]:
        """Return the diagnostics in file order, without exact repeats."""
        unique = dict.fromkeys(self.items)
        return sorted(unique, key=Diagnostic.sort_key)


def render_text(diagnostics: Sequence[Diagnostic], sources: dict[str, SourceFile]) -> str:
    """Render diagnostics like a compiler: a greppable first line, the source line, a caret and help."""
    blocks = [_render_one(item, sources) for item in diagnostics]
    errors = sum(1 for item in diagnostics if item.severity is Severity.ERROR)
    warnings = len(diagnostics) - errors
    if diagnostics:
        blocks.append(f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}\n")
    return "\n".join(blocks)


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    return json.dumps([item.as_dict() for item in diagnostics], indent=2, ensure_ascii=False) + "\n"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _render_one(item: Diagnostic, sources: dict[str, SourceFile]) -> str:
    if item.span is None:
        lines = [f"{item.severity.value}[{item.code}]: {item.message}"]
    else:
        span = item.span
        lines = [f"{span.path}:{span.line}:{span.column}: {item.severity.value}[{item.code}]: {item.message}"]
        source = sources.get(span.path)
        if source is not None:
            lines.extend(_snippet(source, span, item.label))
        for extra in item.labels:
            lines.append(f"   = note: {extra.span.path}:{extra.span.line}:{extra.span.column}: {extra.message}")
            extra_source = sources.get(extra.span.path)
            if extra_source is not None:
                lines.extend(_snippet(extra_source, extra.span, ""))
    if item.help:
        lines.append(f"   = help: {item.help}")
    return "\n".join(lines) + "\n"


def _snippet(source: SourceFile, span: Span, label: str) -> list[str]:
    text = source.line_text(span.line).expandtabs(1)
    gutter = " " * len(str(span.line))
    if span.end_line == span.line:
        width = max(1, span.end_column - span.column)
    else:
        width = max(1, len(text) - span.column + 1)
    caret = " " * (span.column - 1) + "^" * width
    if label:
        caret += " " + label
    return [f"{gutter} |", f"{span.line} | {text}", f"{gutter} | {caret}"]
