"""`irules graph`: draw a runbook's step graph as Graphviz DOT or SVG."""

from __future__ import annotations

import enum
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from runtime.commands.common import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EnvOption, PathArgument, fail_internal, require_path

# A runbook's graph has tens of nodes, which Graphviz lays out in well under a second, so a minute means it hangs.
DOT_TIMEOUT_S = 60


class GraphFormat(enum.StrEnum):
    DOT = "dot"
    SVG = "svg"


RunbookOption = Annotated[str, typer.Option("--runbook", help="Id of the runbook to draw, such as rb-001.")]
FormatOption = Annotated[GraphFormat, typer.Option("--format", help="DOT text, or SVG drawn by Graphviz's `dot`.")]
OutputOption = Annotated[Path | None, typer.Option("--output", help="File to write; standard output when omitted.")]


class GraphFailed(Exception):
    """Raised when the graph cannot be drawn. The message gives the reason and `status` the exit code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def register(app: typer.Typer) -> None:
    app.command("graph")(graph)


def graph(
    path: PathArgument,
    runbook: RunbookOption,
    output_format: FormatOption = GraphFormat.DOT,
    env: EnvOption = None,
    output: OutputOption = None,
) -> None:
    """Draw a runbook's step graph. Exit 0 when drawn, 1 on errors in the rules or an unknown runbook, 2 on usage errors or a missing Graphviz."""
    require_path(path)
    try:
        status = _graph(path, runbook, output_format, env, output)
    except GraphFailed as error:
        print(f"irules: {error}", file=sys.stderr)
        status = error.status
    except Exception as error:
        fail_internal(error)
    raise typer.Exit(status)


def _graph(path: Path, runbook_id: str, output_format: GraphFormat, env: str | None, output: Path | None) -> int:
    from compiler.api import check_path
    from compiler.diagnostics import Severity, render_text
    from compiler.stepgraph import build_step_graph, to_dot

    result = check_path(path, env)
    if result.has_errors or result.context is None:
        errors = [item for item in result.diagnostics if item.severity is Severity.ERROR]
        sys.stderr.write(render_text(errors, result.project.sources))
        print(f"irules: the rules have {len(errors)} error(s); no graph was drawn", file=sys.stderr)
        return EXIT_PROBLEMS

    symbols = result.context.symbols
    runbooks = {**symbols.stdlib_runbooks, **symbols.runbooks}
    if runbook_id not in runbooks:
        raise GraphFailed(
            _unknown_runbook_message(runbook_id, sorted(symbols.runbooks), sorted(symbols.stdlib_runbooks)), EXIT_PROBLEMS
        )

    dot = to_dot(build_step_graph(runbooks[runbook_id], symbols.actions))
    data = dot.encode("utf-8") if output_format is GraphFormat.DOT else render_svg(dot)
    _write(data, output)
    return EXIT_OK


def _unknown_runbook_message(runbook_id: str, project: list[str], stdlib: list[str]) -> str:
    from compiler.suggest import closest

    message = f"unknown runbook `{runbook_id}`"
    # A stock runbook turned on with `use runbooks` is in both lists.
    names = list(dict.fromkeys(project + stdlib))
    suggestion = closest(runbook_id, names)
    if suggestion is not None:
        return f"{message}; a runbook with a similar name exists: `{suggestion}`"
    known = ", ".join(f"`{name}`" for name in names)
    return f"{message}; the runbooks are {known}" if known else f"{message}; the project declares no runbook"


def render_svg(dot: str) -> bytes:
    """Run Graphviz's `dot -Tsvg` on `dot` (argv, no shell) and return the SVG.

    Raises:
        GraphFailed: `dot` is not installed (exit 2), failed or timed out (exit 1).
    """
    program = shutil.which("dot")
    if program is None:
        raise GraphFailed(
            "Graphviz `dot` was not found on PATH; install Graphviz (such as `apt-get install graphviz`) or use `--format dot`",
            EXIT_USAGE,
        )
    try:
        completed = subprocess.run(
            [program, "-Tsvg"], input=dot.encode("utf-8"), capture_output=True, timeout=DOT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise GraphFailed(f"Graphviz `dot` timed out after {DOT_TIMEOUT_S} s", EXIT_PROBLEMS) from None
    except OSError as error:
        raise GraphFailed(f"cannot run Graphviz `dot`: {error.strerror}", EXIT_USAGE) from None
    if completed.returncode != 0:
        reason = completed.stderr.decode("utf-8", "replace").strip()
        raise GraphFailed(f"Graphviz `dot` failed with exit code {completed.returncode}: {reason}", EXIT_PROBLEMS)
    return completed.stdout


def _write(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as error:
        raise GraphFailed(f"cannot write `{output}`: {error.strerror}", EXIT_USAGE) from None
