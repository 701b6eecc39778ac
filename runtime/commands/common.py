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


# The environment variable of each store option, as the options declare it.
_STORE_VARIABLES = {"state": "IRULES_STATE", "database": "IRULES_DATABASE", "daemon": "IRULES_DAEMON"}


def typed_over_environment(
    context: typer.Context | None, state: Path | None, database: str | None, daemon: str | None
) -> tuple[Path | None, str | None, str | None]:
    """Return the store options, without those from environment variables when one was typed as a flag.

    So `IRULES_STATE` in a shell profile does not stop `--daemon URL` from working. Without
    a context (a direct call), every value counts as typed.
    """
    values = {"state": state, "database": database, "daemon": daemon}
    inherited = {name for name in values if from_environment(context, name)}
    if any(value and name not in inherited for name, value in values.items()):
        values = {name: None if name in inherited else value for name, value in values.items()}
    return values["state"], values["database"], values["daemon"]


def from_environment(context: typer.Context | None, name: str) -> bool:
    if context is None:
        return False
    source = context.get_parameter_source(name)
    return source is not None and source.name == "ENVIRONMENT"


def store_option_name(context: typer.Context | None, name: str) -> str:
    """Return how the user gave the store option `name`: `--state`, or `IRULES_STATE` when it came from there."""
    return _STORE_VARIABLES[name] if from_environment(context, name) else f"--{name}"


def require_store(state: Path | None, database: str | None, daemon: str | None) -> None:
    """Exit 2 when `--state` alone names a folder without a store: a report reads one, and opening it would create one."""
    from runtime.store import DATABASE_FILE

    if state is None or database is not None or daemon is not None:
        return
    if not state.is_dir():
        print(f"irules: state folder {str(state)!r} does not exist", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    if not (state / DATABASE_FILE).is_file():
        print(f"irules: no store in {state}: {DATABASE_FILE} not found", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
