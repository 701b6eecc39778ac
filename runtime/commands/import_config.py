"""`irules import`: convert an Alertmanager configuration into .irules files, then check them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runtime.commands.common import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, fail_internal, require_path

if TYPE_CHECKING:
    from compiler.importer import ImportResult

ConfigArgument = Annotated[Path, typer.Argument(help="The Alertmanager configuration file (YAML) to convert.")]
OutOption = Annotated[Path, typer.Option("--out", help="Folder for the generated .irules files; created when missing.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite generated files that already exist in the folder.")]


def register(app: typer.Typer) -> None:
    app.command("import")(import_config)


def import_config(config: ConfigArgument, out: OutOption, force: ForceOption = False) -> None:
    """Convert an Alertmanager configuration into .irules files. Exit 0 when they check clean, 1 on invalid input or errors in the result, 2 on usage errors."""
    require_path(config)
    try:
        status = _import(config, out, force)
    except Exception as error:
        fail_internal(error)
    raise typer.Exit(status)


def _import(config: Path, out: Path, force: bool) -> int:
    from compiler.importer import ImportFailed, import_alertmanager

    try:
        text = config.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        print(f"irules: cannot import `{config}`: the file is not valid UTF-8 (byte {error.start})", file=sys.stderr)
        return EXIT_PROBLEMS
    except OSError as error:
        print(f"irules: cannot read `{config}`: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = import_alertmanager(text)
    except ImportFailed as error:
        print(f"irules: cannot import `{config}`: {error}", file=sys.stderr)
        return EXIT_PROBLEMS

    status = _write_files(out, result.files, force)
    if status != EXIT_OK:
        return status
    _print_report(result)
    return _check_output(out)


def _write_files(out: Path, files: dict[str, str], force: bool) -> int:
    if out.exists() and not out.is_dir():
        print(f"irules: `{out}` exists and is not a folder", file=sys.stderr)
        return EXIT_USAGE
    existing = [out / name for name in files if (out / name).exists()]
    if existing and not force:
        listed = ", ".join(f"`{path}`" for path in existing)
        print(f"irules: {listed} already exist; pass --force to overwrite them", file=sys.stderr)
        return EXIT_USAGE
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (out / name).write_text(text, encoding="utf-8", newline="")
            print(f"wrote {out / name}")
    except OSError as error:
        print(f"irules: cannot write to `{out}`: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _print_report(result: ImportResult) -> None:
    """Print the notes and the secrets to provide. Only names and origins reach this point, never secret values."""
    if result.notes:
        print("\nnotes:")
        for note in result.notes:
            print(f"  - {note}")
    if result.secrets:
        print("\nsecrets to provide, one file per name in the secrets folder (`secrets_dir`, /etc/irules/secrets by default):")
        width = max(len(secret.name) for secret in result.secrets)
        for secret in result.secrets:
            print(f"  {secret.name:<{width}}  value from {secret.origin}")


def _check_output(out: Path) -> int:
    from compiler.api import check_path
    from compiler.diagnostics import render_text

    checked = check_path(out)
    if checked.diagnostics:
        sys.stderr.write(render_text(checked.diagnostics, checked.project.sources))
    if checked.has_errors:
        print(f"irules: the imported rules have errors; fix them in `{out}` and run `irules check {out}`", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"\nthe imported rules in `{out}` check without errors")
    return EXIT_OK
