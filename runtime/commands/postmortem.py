"""`irules post-mortem`: write an incident's post-mortem in Markdown or HTML, in English or German.

It reads a local store (`--state DIR` or `--database URL`, also from
IRULES_STATE and IRULES_DATABASE) or asks a running daemon (`--daemon URL`,
also from IRULES_DAEMON) for the incident's records. Either way the document
is rendered here, so `--template-dir` and `--locale` work the same.
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

from runtime.commands.common import EXIT_PROBLEMS, EXIT_USAGE, require_store, typed_over_environment, write_atomically
from runtime.commands.incidents import DaemonOption, DatabaseOption, IncidentOption, StateOption, _backend, _fail


class Locale(enum.StrEnum):
    EN = "en"
    DE = "de"


class DocumentFormat(enum.StrEnum):
    MD = "md"
    HTML = "html"


def register(app: typer.Typer) -> None:
    app.command(name="post-mortem")(post_mortem_command)


def post_mortem_command(
    ctx: typer.Context,
    incident_id: IncidentOption,
    output: Annotated[str, typer.Option("--output", help="File to write; `-` writes to standard output.")],
    locale: Annotated[Locale, typer.Option("--locale", help="Language of the fixed wording: en or de.")] = Locale.EN,
    document_format: Annotated[DocumentFormat, typer.Option("--format", help="Markdown (md) or HTML.")] = DocumentFormat.MD,
    template_dir: Annotated[
        Path | None,
        typer.Option("--template-dir", help="Folder whose postmortem.* templates replace the shipped ones of the same name."),
    ] = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
) -> None:
    """Write the post-mortem of an incident from its store rows and timeline. Exit 1 when the incident is unknown or a template fails, 2 on usage errors."""
    from runtime.client import BackendError
    from runtime.reports.postmortem_render import PostMortemError, render

    if template_dir is not None and not template_dir.is_dir():
        _fail(f"template folder {str(template_dir)!r} does not exist", EXIT_USAGE)
    require_store(*typed_over_environment(ctx, state, database, daemon))

    backend = _backend(state, database, daemon, context=ctx)
    try:
        post_mortem = backend.post_mortem(incident_id)
        text = render(post_mortem, locale=locale.value, output_format=document_format.value, template_dir=template_dir)
    except BackendError as error:
        _fail(str(error), EXIT_PROBLEMS)
    except PostMortemError as error:
        _fail(str(error), EXIT_PROBLEMS)
    finally:
        backend.close()

    if output == "-":
        sys.stdout.write(text)
        return
    try:
        write_atomically(Path(output), text)
    except OSError as error:
        _fail(f"cannot write {output}: {error.strerror}", EXIT_PROBLEMS)
    print(f"{post_mortem.incident.key}: post-mortem written to {output}")
