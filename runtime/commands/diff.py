"""`irules diff`: compare compiled artifacts with a folder, or the routing of two versions of the rules."""

from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass
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
    fail_internal,
    require_path,
)

AgainstOption = Annotated[
    Path,
    typer.Option(
        "--against",
        help="Folder of previously compiled artifacts; with --routing, the folder or file of the old rules instead.",
    ),
]
RoutingOption = Annotated[
    bool,
    typer.Option(
        "--routing", help="Compare how the old rules (--against) and the new ones (PATH) route, inhibit and rate alerts."
    ),
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="Differences as text or JSON.")]


@dataclass(frozen=True, slots=True)
class FileDifference:
    """One artifact that differs from the file in the compared folder."""

    name: str
    status: str  # `changed`, `missing` (no file in the folder) or `stale` (a file the rules no longer produce)
    diff: str


def register(app: typer.Typer) -> None:
    app.command(name="diff")(diff_command)


def diff_command(
    path: PathArgument,
    against: AgainstOption,
    env: EnvOption = None,
    routing: RoutingOption = False,
    output_format: FormatOption = OutputFormat.TEXT,
) -> None:
    """Show how compiling PATH differs from --against. Exit 0 when equal, 1 when different, 2 on errors.

    Without --routing, the artifacts compiled in memory are compared with the
    files in the --against folder, printing a unified diff per differing or
    missing file. With --routing, --against names the old rules, and the alerts
    whose receivers, inhibition or severity differ between the versions are printed.
    """
    require_path(path)
    require_path(against)
    if not routing and not against.is_dir():
        print(f"irules: --against must be a folder of compiled artifacts, but {against} is a file", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    from runtime.commands.compile import BuildFailed

    try:
        status = _diff_routing(path, against, env, output_format) if routing else _diff_files(path, against, env, output_format)
    except BuildFailed:
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as error:
        fail_internal(error)
    raise typer.Exit(status)


def _diff_files(path: Path, against: Path, environment: str | None, output_format: OutputFormat) -> int:
    from runtime.commands.compile import build_artifacts

    artifacts = build_artifacts(path, environment)
    differences = compare_artifacts(
        artifacts, against, f"compiled from {path}" + (f" --env {environment}" if environment else "")
    )
    if output_format is OutputFormat.JSON:
        files = [{"name": item.name, "status": item.status, "diff": item.diff} for item in differences]
        print(json.dumps({"equal": not differences, "files": files}, indent=2, ensure_ascii=False))
    else:
        for item in differences:
            sys.stdout.write(item.diff)
        if differences:
            names = ", ".join(f"{item.name} ({item.status})" for item in differences)
            print(f"irules: {len(differences)} artifact(s) differ from {against}: {names}", file=sys.stderr)
    return EXIT_PROBLEMS if differences else EXIT_OK


def compare_artifacts(artifacts: dict[str, str], folder: Path, source: str) -> list[FileDifference]:
    """Return the artifacts whose file in `folder` is missing or different, and stale artifact files there."""
    from targets.render import ARTIFACTS

    differences = []
    for name in ARTIFACTS:
        file = folder / name
        existing = _read_text(file)
        compiled = artifacts.get(name)
        if compiled is None and existing is None:
            continue
        if compiled == existing:
            continue
        if existing is None:
            status, old_label = "missing", f"{file} (missing)"
        elif compiled is None:
            status, old_label = "stale", str(file)
        else:
            status, old_label = "changed", str(file)
        new_label = f"{name} ({source})" if compiled is not None else f"{name} (not produced by these rules)"
        diff = _unified_diff(existing or "", compiled or "", old_label, new_label)
        differences.append(FileDifference(name, status, diff))
    return differences


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return None


def _unified_diff(old: str, new: str, old_label: str, new_label: str) -> str:
    lines = difflib.unified_diff(_lines(old), _lines(new), fromfile=old_label, tofile=new_label)
    return "".join(lines)


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def _diff_routing(path: Path, against: Path, environment: str | None, output_format: OutputFormat) -> int:
    from compiler.behaviour import routing_diff
    from runtime.commands.compile import build_ruleset

    old = build_ruleset(against, environment)
    new = build_ruleset(path, environment)
    result = routing_diff(old, new)
    if output_format is OutputFormat.JSON:
        print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        text = result.render_text()
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return EXIT_PROBLEMS if result.changes else EXIT_OK
