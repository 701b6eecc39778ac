"""`irules compile`: check rules and write the artifacts for Alertmanager, PagerDuty, Slack and the daemon."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runtime.commands.common import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EnvOption, PathArgument, fail_internal, require_path

if TYPE_CHECKING:
    from compiler.ir import Ruleset
    from compiler.loader import Project

OutOption = Annotated[Path, typer.Option("--out", help="Folder to write the artifacts to; created when missing.")]


class BuildFailed(Exception):
    """The rules have errors or an artifact cannot be produced; the reason has been printed to stderr."""


def register(app: typer.Typer) -> None:
    app.command(name="compile")(compile_command)


def compile_command(path: PathArgument, out: OutOption, env: EnvOption = None) -> None:
    """Compile rules into artifacts. Exit 0 when written, 1 when the rules or an artifact have errors, 2 on usage or I/O errors.

    Writes alertmanager.yml, pagerduty.json, slack-manifest.yaml and
    slack-blocks.json (when the rules declare a Slack app) and ruleset.json. Nothing is written when the rules have
    errors; files whose content is unchanged are left alone.
    """
    require_path(path)
    if out.exists() and not out.is_dir():
        print(f"irules: --out must be a folder, but {out} is a file", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    try:
        artifacts = build_artifacts(path, env)
        status = write_artifacts(artifacts, out)
    except BuildFailed:
        raise typer.Exit(EXIT_PROBLEMS) from None
    except OSError as error:
        print(f"irules: cannot write to {out}: {error.strerror or error}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as error:
        fail_internal(error)
    raise typer.Exit(status)


def build_ruleset(path: Path, environment: str | None) -> Ruleset:
    """Check the project at `path`, print its diagnostics to stderr, and return its ruleset.

    Raises:
        BuildFailed: the rules have errors, which were printed.
    """
    from compiler.api import check_path
    from compiler.diagnostics import render_text

    result = check_path(path, environment)
    if result.diagnostics:
        sys.stderr.write(render_text(result.diagnostics, result.project.sources))
    if result.has_errors:
        raise BuildFailed
    return with_portable_paths(result.ruleset(), result.project)


def build_artifacts(path: Path, environment: str | None) -> dict[str, str]:
    """Check the project at `path`, print its diagnostics to stderr, and return the rendered artifacts.

    Raises:
        BuildFailed: the rules have errors or a target cannot render them; the reason was printed.
    """
    from compiler.api import collector_paused
    from compiler.errors import TargetError
    from targets.render import render_all

    # With the collector on, each full pass scans the whole syntax tree and IR.
    # On large projects that is most of the time `with_portable_paths` takes.
    # The IR is freed before the collector resumes, so that its first pass skips it.
    with collector_paused():
        try:
            return render_all(build_ruleset(path, environment))
        except TargetError as error:
            print(f"irules: cannot generate the artifacts: {error}", file=sys.stderr)
            raise BuildFailed from None


def with_portable_paths(ruleset: Ruleset, project: Project) -> Ruleset:
    """Return `ruleset` with every source file path relative to the project folder.

    The loader records paths as shown to the user (relative to the working
    directory, or absolute), which would make `ruleset.json` depend on where
    `irules` ran. The source paths of routes, severity rules and tests are
    replaced, while expression paths and webhook paths stay as they are.
    """
    from compiler.lower import portable_path

    portable = {shown: portable_path(shown, project) for shown in project.sources}
    severity = ruleset.severity.model_copy(update={"rules": [_with_path(rule, portable) for rule in ruleset.severity.rules]})
    return ruleset.model_copy(
        update={
            "route": _route_with_paths(ruleset.route, portable),
            "severity": severity,
            "tests": [_with_path(test, portable) for test in ruleset.tests],
        }
    )


def _with_path(model: Any, portable: dict[str, str]) -> Any:
    path = getattr(model, "path", None)
    return model.model_copy(update={"path": portable.get(path, path)}) if path in portable else model


def _route_with_paths(route: Any, portable: dict[str, str]) -> Any:
    # model_copy skips validation, which matters on trees of 10,000 routes.
    children = [_route_with_paths(child, portable) for child in route.routes]
    return _with_path(route, portable).model_copy(update={"routes": children})


def write_artifacts(artifacts: dict[str, str], out: Path) -> int:
    """Write each changed artifact atomically, remove artifacts no longer produced, and report each change."""
    from targets.render import ARTIFACTS

    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, text in artifacts.items():
        target = out / name
        if _read_text(target) == text:
            continue
        _write_atomically(target, text)
        print(f"wrote {target}")
        written += 1
    for name in ARTIFACTS:
        stale = out / name
        if name not in artifacts and stale.is_file():
            stale.unlink()
            print(f"removed {stale}, which these rules no longer produce")
    unchanged = len(artifacts) - written
    print(f"{written} written, {unchanged} unchanged in {out}")
    return EXIT_OK


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        return None


def _file_mode(target: Path) -> int:
    """Return the mode of the file being replaced, or the mode a new file gets under the current umask."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_atomically(target: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename it over `target`, so readers never see half a file."""
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.chmod(temporary, _file_mode(target))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
