"""The `irules` command line.

Heavy modules (the parser, the checker) are imported inside the commands so
that `irules --help` prints at once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from runtime.commands.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    EnvOption,
    OutputFormat,
    PathArgument,
    write_atomically,
)
from runtime.commands.common import fail_internal as _fail_internal
from runtime.commands.common import require_path as _require_path

app = typer.Typer(
    name="irules",
    help="Compile incident policy written in .irules files, and check it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(requested: bool) -> None:
    if requested:
        from compiler.version import __version__

        print(f"irules {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the irules version and exit.")
    ] = False,
) -> None:
    """Compile incident policy written in .irules files, and check it."""


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
        from targets.check import target_diagnostics

        result.diagnostics.extend(target_diagnostics(result))
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


@app.command()
def fmt(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders; every .irules file below a folder is formatted.")],
    check_only: Annotated[bool, typer.Option("--check", help="Write nothing and list the files that would change.")] = False,
) -> None:
    """Format .irules files in place. Exit 0 when done, 1 on syntax errors or (with --check) files to change, 2 on usage errors."""
    for path in paths:
        _require_path(path)
    try:
        status = _format_paths(paths, check_only)
    except Exception as error:
        _fail_internal(error)
    raise typer.Exit(status)


def _format_paths(paths: list[Path], check_only: bool) -> int:
    from compiler.loader import display_path, find_rule_files

    files = dict.fromkeys(file.resolve() for path in paths for file in find_rule_files(path))
    status = EXIT_OK
    for file in files:
        shown = display_path(file)
        outcome = _format_file(file, shown, write=not check_only)
        if outcome == "changed":
            print(f"would reformat {shown}" if check_only else f"reformatted {shown}")
        if outcome == "failed" or (outcome == "changed" and check_only):
            status = EXIT_PROBLEMS
    return status


def _format_file(file: Path, shown: str, *, write: bool) -> str:
    """Format one file and return `changed`, `unchanged` or `failed`, after reporting why it failed."""
    from compiler.diagnostics import DiagnosticSink, render_text
    from compiler.errors import CompileFailed
    from compiler.fmt import format_source
    from compiler.span import SourceFile

    sink = DiagnosticSink()
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        sink.error("IR1001", f"file `{shown}` is not valid UTF-8 (byte {error.start})", None)
    except OSError as error:
        sink.error("IR1002", f"cannot read `{shown}`: {error.strerror}", None)
    if sink.items:
        sys.stderr.write(render_text(sink.items, {}))
        return "failed"
    try:
        formatted = format_source(text, shown)
    except CompileFailed as error:
        sys.stderr.write(render_text(error.diagnostics, {shown: SourceFile(shown, text)}))
        return "failed"
    if formatted == text:
        return "unchanged"
    if write:
        write_atomically(file, formatted)
    return "changed"


# Commands that live in modules of their own under runtime/commands; each
# module has `register(app)` and keeps heavy imports inside its commands.
COMMAND_MODULES = (
    "compile",
    "diff",
    "test",
    "explain",
    "import_config",
    "graph",
    "init",
    "daemon",
    "incidents",
    "runbooks",
    "assist",
    "model",
    "postmortem",
    "metrics",
    "backtest",
)


def _register_commands() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"runtime.commands.{name}").register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
