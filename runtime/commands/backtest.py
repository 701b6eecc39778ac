"""`irules backtest`: replay the alerts a store recorded through two rule versions and report the differences.

PATH is the candidate version, `--against` the baseline: a folder, a file or a
git ref of the repository that contains PATH. Both replays receive the same alert
events and the same acknowledgements and resolutions by people, on a virtual
clock, and send nothing.
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import re
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runtime.commands.common import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EnvOption, PathArgument, fail_internal, require_path

if TYPE_CHECKING:
    from rich.text import Text

    from runtime.policy import Policy
    from runtime.simulate.backtest import History
    from runtime.simulate.compare import Comparison
    from runtime.simulate.result import SimulationResult

# Concrete incidents listed in the table; JSON lists them all.
SHOWN_DIFFERENCES = 10
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class BacktestFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


AgainstOption = Annotated[
    str,
    typer.Option("--against", help="The baseline rules: a folder, a file, or a git ref of the repository that contains PATH."),
]
FromOption = Annotated[
    str, typer.Option("--from", help="Start of the window: a date (2026-03-02) or time (2026-03-02T08:00Z); UTC when no zone.")
]
ToOption = Annotated[
    str, typer.Option("--to", help="End of the window, excluded; a date alone includes that whole day. UTC when no zone.")
]
StateOption = Annotated[Path | None, typer.Option("--state", envvar="IRULES_STATE", help="Folder of the embedded SQLite store.")]
DatabaseOption = Annotated[str | None, typer.Option("--database", envvar="IRULES_DATABASE", help="SQLAlchemy URL of the store.")]
FormatOption = Annotated[BacktestFormat, typer.Option("--format", help="A table or JSON.")]


class UsageError(Exception):
    """A command line that cannot run; the message names the invalid option and the reason."""


def register(app: typer.Typer) -> None:
    app.command(name="backtest")(backtest_command)


def backtest_command(
    path: PathArgument,
    against: AgainstOption,
    start_text: FromOption,
    end_text: ToOption,
    env: EnvOption = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    output_format: FormatOption = BacktestFormat.TABLE,
) -> None:
    """Replay the recorded alerts through PATH and through --against, and report merged and split incidents, pages, escalations and runbooks. Exit 0 when done, 1 on rules errors, 2 on usage errors."""
    require_path(path)
    try:
        with ExitStack() as stack:
            status = _backtest(stack, path, against, start_text, end_text, env, state, database, output_format)
    except UsageError as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as error:
        fail_internal(error)
    raise typer.Exit(status)


def _backtest(
    stack: ExitStack,
    path: Path,
    against: str,
    start_text: str,
    end_text: str,
    env: str | None,
    state: Path | None,
    database: str | None,
    output_format: BacktestFormat,
) -> int:
    from runtime.simulate.versions import VersionError, resolve_version

    start, end = parse_window(start_text, end_text)
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="irules-backtest-")))
    try:
        baseline_path = resolve_version(against, path, scratch)
    except VersionError as error:
        raise UsageError(str(error)) from error
    candidate = load_policy(path, env)
    baseline = load_policy(baseline_path, env, label=f"--against {against}")
    if candidate is None or baseline is None:
        return EXIT_PROBLEMS
    history = _read_history(state, database, start, end)
    baseline_result, candidate_result = _replay_both(baseline, candidate, history)

    from runtime.simulate.compare import compare

    comparison = compare(baseline_result, candidate_result)
    labels = (against, str(path))
    if output_format is BacktestFormat.JSON:
        sys.stdout.write(json.dumps(report_json(history, labels, comparison), indent=2, ensure_ascii=False) + "\n")
    else:
        print_table(history, labels, comparison)
    return EXIT_OK


# ---------------------------------------------------------------- inputs


def parse_window(start_text: str, end_text: str) -> tuple[datetime.datetime, datetime.datetime]:
    """Return the window [start, end) of `--from` and `--to`; a date alone as `--to` ends after that day."""
    start = _parse_moment(start_text, "--from", whole_day=False)
    end = _parse_moment(end_text, "--to", whole_day=True)
    if end <= start:
        raise UsageError(f"--to {end_text} is not after --from {start_text}")
    return start, end


def _parse_moment(text: str, option: str, *, whole_day: bool) -> datetime.datetime:
    try:
        if _DATE.fullmatch(text):
            day = datetime.date.fromisoformat(text)
            moment = datetime.datetime.combine(day, datetime.time(), datetime.UTC)
            return moment + datetime.timedelta(days=1) if whole_day else moment
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date (2026-03-02) or an ISO 8601 time (2026-03-02T08:00Z)") from None
    return moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment.astimezone(datetime.UTC)


def load_policy(path: Path, env: str | None, label: str | None = None) -> Policy | None:
    """Check the rules at `path` and return their policy, or print the diagnostics as `irules check` does and return None."""
    from compiler.api import check_path
    from compiler.diagnostics import render_text
    from runtime.daemon.rules import RulesState

    result = check_path(path, env)
    if result.diagnostics:
        if label is not None:
            print(f"irules: in the rules of {label}:", file=sys.stderr)
        sys.stderr.write(render_text(result.diagnostics, result.project.sources))
    if result.has_errors:
        return None
    # Loaded again as the daemon loads it, with the severity model that `classify` names.
    rules = RulesState(path, env)
    rules.reload()
    return rules.current()


def _read_history(state: Path | None, database: str | None, start: datetime.datetime, end: datetime.datetime) -> History:
    import sqlalchemy as sa

    from runtime.simulate.backtest import load_history
    from runtime.store import Store, StoreError, database_url

    chosen = [name for name, value in (("--state", state), ("--database", database)) if value]
    if len(chosen) != 1:
        problem = "none was given" if not chosen else "both were given"
        raise UsageError(f"pass exactly one of --state DIR or --database URL ({problem})")
    if state is not None and not (state / "irules.db").is_file():
        raise UsageError(f"no store in {state}: the folder has no irules.db")
    url = database_url(state, database)
    try:
        store = Store.open(url, migrate=False)
    except StoreError as error:
        raise UsageError(str(error)) from error
    except sa.exc.DBAPIError as error:
        raise UsageError(f"cannot read the database {_shown(url)}: {error.orig}") from error
    try:
        try:
            revision = store.schema_revision()
        except sa.exc.DBAPIError as error:
            raise UsageError(f"cannot read the database {_shown(url)}: {error.orig}") from error
        if revision is None:
            raise UsageError(f"the database {_shown(url)} has no irules store; name the store the daemon writes to")
        return load_history(store, start, end)
    finally:
        store.close()


def _shown(url: str) -> str:
    """Return a database URL without its password."""
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


def _replay_both(baseline: Policy, candidate: Policy, history: History) -> tuple[SimulationResult, SimulationResult]:
    """Replay the history through both versions, with a progress bar on stderr when it is a terminal."""
    from rich.console import Console
    from rich.progress import Progress

    from runtime.simulate.backtest import replay

    # The pipeline logs each incident it opens; a replay of a week would drown the report.
    logging.getLogger("irules").setLevel(logging.ERROR)
    console = Console(stderr=True)
    with Progress(console=console, disable=not console.is_terminal, transient=True) as progress:
        results = []
        for name, policy in (("baseline", baseline), ("candidate", candidate)):
            task = progress.add_task(f"replaying through the {name}", total=max(1, len(history.events) + len(history.actions)))
            results.append(replay(policy, history, lambda done, total, task=task: progress.update(task, completed=done)))
    return results[0], results[1]


# ---------------------------------------------------------------- output


def report_json(history: History, labels: tuple[str, str], comparison: Comparison) -> dict[str, Any]:
    """Return the report as JSON: the window, the inputs replayed and every computed difference."""
    from runtime.simulate.result import iso

    return {
        "window": {"from": iso(history.start), "to": iso(history.end)},
        "baseline": labels[0],
        "candidate": labels[1],
        "events": len(history.events),
        "actions": len(history.actions),
        **comparison.to_json(),
    }


def print_table(history: History, labels: tuple[str, str], comparison: Comparison) -> None:
    """Print the report as Rich tables on stdout. Every cell is plain text, so names from alerts are never read as markup."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    console.print(
        Text(
            f"Backtest from {history.start:%Y-%m-%d %H:%M:%S} to {history.end:%Y-%m-%d %H:%M:%S} UTC: "
            f"{len(history.events)} alert events and {len(history.actions)} actions by people replayed."
        )
    )
    # Paths make wide column headings that Rich would cut, so the columns are A and B.
    console.print(Text(f"A: {labels[0]}\nB: {labels[1]}"))
    labels = ("A", "B")
    summary = Table(title="Summary", title_justify="left")
    summary.add_column("")
    for heading in (labels[0], labels[1], "difference"):
        summary.add_column(Text(heading), justify="right")
    summary.add_row(*_cells("incidents", comparison.incidents))
    summary.add_row(*_cells("escalation steps", comparison.escalation_steps))
    for level, count in comparison.escalation_levels.items():
        summary.add_row(*_cells(f"incidents at escalation level {level}+", count))
    for receiver, count in comparison.pages.items():
        summary.add_row(*_cells(f"pages to {receiver}", count))
    for runbook, count in comparison.runbooks.items():
        summary.add_row(*_cells(f"runs of runbook {runbook}", count))
    for runbook, count in comparison.refused_runbooks.items():
        summary.add_row(*_cells(f"refused runs of runbook {runbook}", count))
    console.print(summary)
    console.print(
        Text(
            f"Merged: {_incidents(len(comparison.merged))} of {labels[1]} each hold the alerts of several incidents of "
            f"{labels[0]} ({comparison.merged_baseline_incidents} in all). "
            f"Split: {_incidents(len(comparison.split))} of {labels[0]} spread over several incidents of {labels[1]}."
        )
    )
    _print_differences(console, labels, comparison)


def _incidents(count: int) -> str:
    return "1 incident" if count == 1 else f"{count} incidents"


def _cells(name: str, count: Any) -> tuple[Text, Text, Text, Text]:
    from rich.text import Text

    return Text(name), Text(str(count.baseline)), Text(str(count.candidate)), Text(f"{count.difference:+d}")


def _print_differences(console: Any, labels: tuple[str, str], comparison: Comparison) -> None:
    """Print the first concrete incidents that differ as short lines, which read at any terminal width."""
    from rich.text import Text

    if not comparison.differences:
        console.print("No incident differs.")
        return
    shown = comparison.differences[:SHOWN_DIFFERENCES]
    console.print(Text(f"Incidents that differ ({len(shown)} of {len(comparison.differences)}):"))
    for difference in shown:
        console.print(Text(f"  {difference.kind} {difference.at:%Y-%m-%d %H:%M}: {difference.title}"))
        console.print(Text(f"    {labels[0]}: {', '.join(difference.baseline)}  {labels[1]}: {', '.join(difference.candidate)}"))
        for change in difference.changes:
            console.print(Text(f"    {change}"))
    hidden = len(comparison.differences) - len(shown)
    if hidden > 0:
        console.print(f"... and {hidden} more; --format json lists them all.")
