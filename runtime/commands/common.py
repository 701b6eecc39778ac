"""Parts shared by every `irules` command: exit codes, common options, error reporting."""

from __future__ import annotations

import enum
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


PathArgument = Annotated[Path, typer.Argument(help="A folder of .irules files, or one file.")]
EnvOption = Annotated[str | None, typer.Option("--env", help="Environment whose overrides to apply, e.g. production.")]


def fail_internal(error: BaseException) -> None:
    """Report a bug in irules itself without a traceback, unless IRULES_DEBUG is set."""
    if os.environ.get("IRULES_DEBUG"):
        traceback.print_exception(error)
    else:
        print(f"irules: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        print("irules: this is a bug in irules; set IRULES_DEBUG=1 for the traceback and report it", file=sys.stderr)
    raise typer.Exit(EXIT_USAGE)


def require_path(path: Path) -> None:
    if not path.exists():
        print(f"irules: path not found: {path}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a failure leaves the old file whole.

    The text is encoded before anything is written, and the new file is
    renamed over the old one only once it is complete.
    """
    data = text.encode("utf-8")
    temporary = path.with_name(f".{path.name}.irules-tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
