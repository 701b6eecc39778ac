"""The `irules` command line.

Heavy modules (the parser, the checker) are imported inside the commands so
that `irules --help` answers at once.
"""

from __future__ import annotations

import enum
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="irules",
    help="Compile incident policy written in .irules files, and check it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


PathArgument = Annotated[Path, typer.Argument(help="A folder of .irules files, or one file.")]
EnvOption = Annotated[str | None, typer.Option("--env", help="Environment whose overrides to apply, e.g. production.")]


def _fail_internal(error: BaseException) -> None:
    """Report a bug in irules itself without a traceback, unless IRULES_DEBUG is set."""
    if os.environ.get("IRULES_DEBUG"):
        traceback.print_exception(error)
    else:
        print(f"irules: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        print("irules: this is a bug in irules; set IRULES_DEBUG=1 for the traceback and report it", file=sys.stderr)
    raise typer.Exit(EXIT_USAGE)


def _require_path(path: Path) -> None:
    if not path.exists():
        print(f"irules: path not found: {path}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)


@app.command()
def check(
    path: PathArgument,
    env: EnvOption = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="Diagnostics as text or JSON.")] = OutputFormat.TEXT,
) -> None:
    """Check rules and report every problem. Exit 0 when clean or warnings only, 1 on errors, 2 on usage errors."""
    _require_path(path)
    try:
        from compiler.api import check_path
        from compiler.diagnostics import render_json, render_text

        result = check_path(path, env)
        if output_format is OutputFormat.JSON:
            sys.stdout.write(render_json(result.diagnostics))
        elif result.diagnostics:
            sys.stderr.write(render_text(result.diagnostics, result.project.sources))
    except Exception as error:
        _fail_internal(error)
    raise typer.Exit(EXIT_PROBLEMS if result.has_errors else EXIT_OK)


@app.command()
def codes(code: Annotated[str | None, typer.Argument(help="A diagnostic code such as IR0203.")] = None) -> None:
    """Explain a diagnostic code, or list every code."""
    from compiler.codes import all_codes, explain

    if code is None:
        for name, entry in sorted(all_codes().items()):
            print(f"{name}  {entry.summary}")
        return
    text = explain(code)
    if text is None:
        print(f"irules: unknown diagnostic code {code!r}; `irules codes` lists them all", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    print(text, end="")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
