"""`irules metrics`: incident counts, MTTA and MTTR, noise, automatic remediation and escalations over a timeframe.

It reads a local store (`--state DIR` or `--database URL`, also from IRULES_STATE
and IRULES_DATABASE) or asks a running daemon for the figures (`--daemon URL`,
also from IRULES_DAEMON), and prints a table or JSON, or writes a
self-contained HTML dashboard.
"""

from __future__ import annotations

import datetime
import enum
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runtime.commands.common import (
    EXIT_PROBLEMS,
    EXIT_USAGE,
    fail_internal,
    require_store,
    typed_over_environment,
    write_atomically,
)
from runtime.commands.incidents import DaemonOption, DatabaseOption, StateOption, _backend

if TYPE_CHECKING:
    from runtime.reports.metrics import Breakdown, Metrics


class MetricsFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    DASHBOARD = "dashboard"


def register(app: typer.Typer) -> None:
    app.command(name="metrics")(metrics_command)


def metrics_command(
    ctx: typer.Context,
    timeframe: Annotated[
        str, typer.Option("--timeframe", help="How far back from --until to count incidents: a number and s, m, h, d or w.")
    ] = "30d",
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="End of the timeframe as ISO 8601, such as 2026-03-01T00:00:00Z (UTC when no offset is given). Default: now.",
        ),
    ] = None,
    output_format: Annotated[
        MetricsFormat, typer.Option("--format", help="A table, JSON, or a self-contained HTML dashboard (needs --output).")
    ] = MetricsFormat.TABLE,
    output: Annotated[Path | None, typer.Option("--output", help="File to write instead of standard output.")] = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
) -> None:
    """Report incident counts, MTTA and MTTR percentiles, noise, automatic remediation and escalations."""
    from runtime.client import BackendError
    from runtime.reports.metrics import Window, parse_timeframe

    try:
        window = Window.ending(_until(until), parse_timeframe(timeframe))
    except ValueError as error:
        _fail(str(error), EXIT_USAGE)
    if output_format is MetricsFormat.DASHBOARD and output is None:
        _fail("--format dashboard writes an HTML file: pass --output FILE", EXIT_USAGE)

    require_store(*typed_over_environment(ctx, state, database, daemon))
    backend = _backend(state, database, daemon, context=ctx)
    try:
        metrics = backend.metrics(window)
        text = _render(metrics, output_format, timeframe)
    except BackendError as error:
        _fail(str(error))
    except Exception as error:
        fail_internal(error)
    finally:
        backend.close()
    _write(text, output)
    if output_format is MetricsFormat.DASHBOARD:
        print(
            f"wrote {output}: {metrics.counts.total} incidents from {_minute(metrics.window.start)} to {_minute(metrics.window.end)} UTC"
        )


def _render(metrics: Metrics, output_format: MetricsFormat, timeframe: str) -> str:
    if output_format is MetricsFormat.JSON:
        return json.dumps(metrics.to_json(), indent=2, ensure_ascii=False) + "\n"
    if output_format is MetricsFormat.TABLE:
        return render_table(metrics, timeframe)
    from runtime.reports.dashboard import render_dashboard

    return render_dashboard(metrics, timeframe=timeframe)


def _until(text: str | None) -> datetime.datetime:
    from compiler.evaluate import parse_moment

    if text is None:
        return datetime.datetime.now(datetime.UTC)
    try:
        return parse_moment(text)
    except ValueError:
        raise ValueError(f"invalid --until {text!r}: write an ISO 8601 moment such as 2026-03-01T00:00:00Z") from None


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        write_atomically(output, text)
    except OSError as error:
        _fail(f"cannot write {output}: {error.strerror}")


def _fail(message: str, status: int = EXIT_PROBLEMS) -> None:
    print(f"irules: {message}", file=sys.stderr)
    raise typer.Exit(status)


def _minute(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------- table


def render_table(metrics: Metrics, timeframe: str) -> str:
    """Return the report as plain-text tables."""
    from runtime.reports.metrics import PERCENTILE_METHOD

    window = metrics.window
    lines = [
        f"{metrics.counts.total} incidents created from {_minute(window.start)} to {_minute(window.end)} UTC ({timeframe})",
        f"Percentiles: {PERCENTILE_METHOD}.",
        "",
        "Incidents",
        *_counts_table(metrics),
        "",
        "Time to acknowledge (MTTA)",
        *_durations_table(metrics.acknowledge),
        "",
        "Time to resolve (MTTR)",
        *_durations_table(metrics.resolve),
        "",
        *_noise_lines(metrics),
        "",
        *_remediation_lines(metrics),
        "",
        *_escalation_lines(metrics),
    ]
    if metrics.slowest:
        lines += ["", "Longest time to resolve", *_slowest_table(metrics)]
    return "\n".join(lines) + "\n"


def _counts_table(metrics: Metrics) -> list[str]:
    counts = metrics.counts
    rows: list[tuple[str, ...]] = []
    for group, values in (
        ("status", counts.by_status),
        ("team", counts.by_team),
        ("service", counts.by_service),
        ("severity", counts.by_severity),
    ):
        rows += [(group if index == 0 else "", name, str(count)) for index, (name, count) in enumerate(values.items())]
    return _table(("BY", "VALUE", "COUNT"), rows, numeric_from=2)


def _durations_table(breakdown: Breakdown) -> list[str]:
    from runtime.reports.metrics import format_duration

    rows = []
    groups = (("all", {"-": breakdown.overall}), *_groups(breakdown))
    for group, values in groups:
        for index, (name, value) in enumerate(values.items()):
            durations = (value.mean, value.p50, value.p90, value.p95)
            rows.append((group if index == 0 else "", name, str(value.count), *(format_duration(item) for item in durations)))
    return _table(("BY", "VALUE", "COUNT", "MEAN", "P50", "P90", "P95"), rows, numeric_from=2)


def _groups(breakdown: Breakdown):
    return (("team", breakdown.by_team), ("service", breakdown.by_service), ("severity", breakdown.by_severity))


def _noise_lines(metrics: Metrics) -> list[str]:
    noise = metrics.noise
    per_incident = noise.alerts_per_incident
    outcomes = ", ".join(f"{name} {count}" for name, count in noise.events_by_outcome.items())
    lines = ["Noise"]
    if per_incident.count:
        lines.append(
            f"  alerts per incident: mean {per_incident.mean:.2f}, p50 {per_incident.p50:g}, p90 {per_incident.p90:g}, "
            f"p95 {per_incident.p95:g} over {per_incident.count} incidents"
        )
    lines += [
        f"  alert events received: {noise.events_received}" + (f" ({outcomes})" if outcomes else ""),
        *(
            [f"  (counted from {noise.events_since:%Y-%m-%d %H:%M} UTC, the oldest event the store keeps; see --retain-payloads)"]
            if noise.events_since
            else []
        ),
        f"  distinct alerts: {noise.distinct_alerts}; deduplicated events: {noise.deduplicated}",
        f"  inhibited: not available. {noise.inhibited_note}",
    ]
    return lines


def _remediation_lines(metrics: Metrics) -> list[str]:
    remediation = metrics.remediation
    statuses = ", ".join(f"{name} {count}" for name, count in remediation.by_status.items())
    lines = ["Automatic remediation", f"  runs: {remediation.runs}" + (f" ({statuses})" if statuses else "")]
    if remediation.success_rate is None:
        lines.append("  success rate: - (no run finished)")
    else:
        lines.append(
            f"  success rate: {remediation.success_rate:.0%} ({remediation.succeeded} of {remediation.finished} finished runs)"
        )
    for name, (succeeded, finished) in remediation.by_runbook.items():
        lines.append(f"  {_printable(name)}: {succeeded} of {finished} succeeded")
    return lines


def _escalation_lines(metrics: Metrics) -> list[str]:
    reached = metrics.escalations.reached
    lines = ["Escalations"]
    if not reached:
        lines.append("  no incident escalated")
    for level, count in reached.items():
        lines.append(f"  reached level {level}: {count} incident{'' if count == 1 else 's'}")
    return lines


def _slowest_table(metrics: Metrics) -> list[str]:
    from runtime.reports.metrics import format_duration

    rows = [
        (
            incident.key,
            incident.team,
            incident.severity,
            format_duration(incident.time_to_acknowledge),
            format_duration(incident.time_to_resolve),
            incident.title,
        )
        for incident in metrics.slowest
    ]
    return _table(("ID", "TEAM", "SEVERITY", "TTA", "TTR", "TITLE"), rows, numeric_from=3, last_free=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, numeric_from: int, last_free: bool = False) -> list[str]:
    """Return aligned lines, indented by two spaces: text columns left, columns from `numeric_from` right.

    With `last_free`, the last column is left-aligned and never padded, so long titles stay whole.
    """
    lines = [tuple(header), *(tuple(_printable(cell) for cell in row) for row in rows)]
    fixed = len(header) - 1 if last_free else len(header)
    widths = [max(len(line[index]) for line in lines) for index in range(fixed)]
    out = []
    for line in lines:
        cells = [
            cell.rjust(width) if numeric_from <= index < fixed else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(line[:fixed], widths, strict=True))
        ]
        if last_free:
            cells.append(line[-1])
        out.append(("  " + "  ".join(cells)).rstrip())
    return out


def _printable(text: str) -> str:
    """Return `text` with control characters escaped, so data from the store cannot move the terminal's cursor."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
