"""Problems that only a target finds, which `irules check` reports after the checker.

Some rules are valid on their own but cannot become an artifact: an email
channel without SMTP settings, a Slack channel without a webhook URL, a
channel that only the daemon can deliver without `daemon_url`. `irules
compile` stops at them. Running the targets here reports them at check time,
at the channel or declaration they concern, so CI finds them before it builds.
"""

from __future__ import annotations

from compiler import ast
from compiler.api import CheckResult
from compiler.diagnostics import Diagnostic, DiagnosticSink
from compiler.errors import TargetError
from compiler.span import Span

CODE = "IR1201"


def target_diagnostics(result: CheckResult) -> list[Diagnostic]:
    """Return an IR1201 error when a target cannot generate its artifact from `result`, else nothing.

    A project with errors returns nothing, because it has no ruleset to render.
    """
    if result.has_errors or result.context is None:
        return []
    from targets.render import check_targets

    try:
        check_targets(result.ruleset())
    except TargetError as error:
        sink = DiagnosticSink()
        sink.error(
            CODE,
            f"cannot generate the artifacts: {error}",
            _span_of(result, error),
            label="this cannot be generated" if error.receiver else "",
            help="`irules compile` stops at this problem too",
        )
        return sink.items
    return []


def _span_of(result: CheckResult, error: TargetError) -> Span | None:
    """Return the span of the channel the error names, else of its receiver's name, else None."""
    assert result.context is not None
    declaration = result.context.symbols.receivers.get(error.receiver) if error.receiver else None
    if declaration is None:
        return None
    channels: list[ast.Channel] = declaration.channels
    channel = next((item for item in channels if item.kind == error.channel), None)
    return channel.span if channel is not None else declaration.name.span
