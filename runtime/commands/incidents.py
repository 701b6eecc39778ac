"""Incident commands: handle, create, update, ack, resolve, incidents list|show, dead-letters list|dismiss, replay, notifications.

Each works on a local store (`--state DIR` or `--database URL`) or through a
running daemon (`--daemon URL`); each option is also read from IRULES_STATE,
IRULES_DATABASE and IRULES_DAEMON.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from runtime.commands.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    EnvOption,
    OutputFormat,
    store_option_name,
    typed_over_environment,
)

StateOption = Annotated[Path | None, typer.Option("--state", envvar="IRULES_STATE", help="Folder of the embedded SQLite store.")]
DatabaseOption = Annotated[str | None, typer.Option("--database", envvar="IRULES_DATABASE", help="SQLAlchemy URL of the store.")]
DaemonOption = Annotated[
    str | None, typer.Option("--daemon", envvar="IRULES_DAEMON", help="URL of a running daemon, e.g. http://127.0.0.1:8080.")
]
RulesOption = Annotated[
    Path | None, typer.Option("--rules", envvar="IRULES_RULES", help="Folder of .irules files, one file, or a ruleset.json.")
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="A table or JSON.")]
IncidentArgument = Annotated[
    str | None,
    typer.Argument(metavar="INCIDENT_ID", help="Incident id such as INC-2026-0042, or its number.", show_default=False),
]
IncidentOption = Annotated[
    str | None, typer.Option("--incident-id", help="The incident, as an option instead of the INCIDENT_ID argument.")
]
ActorOption = Annotated[str | None, typer.Option("--as", envvar="IRULES_ACTOR", help="Who acts; defaults to the login name.")]


def register(app: typer.Typer) -> None:
    app.command(name="handle")(handle_command)
    app.command(name="create")(create_command)
    app.command(name="update")(update_command)
    app.command(name="ack")(ack_command)
    app.command(name="resolve")(resolve_command)
    app.command(name="replay")(replay_command)
    group = typer.Typer(help="List and show incidents.", no_args_is_help=True)
    group.command(name="list")(list_command)
    group.command(name="show")(show_command)
    app.add_typer(group, name="incidents")
    letters = typer.Typer(help="Requests and events that did not become alerts.", no_args_is_help=True)
    letters.command(name="list")(dead_letters_command)
    letters.command(name="dismiss")(dismiss_dead_letters_command)
    app.add_typer(letters, name="dead-letters")
    notes = typer.Typer(help="Notifications in the outbox: what was sent, what waits, what failed.", no_args_is_help=True)
    notes.command(name="list")(notifications_command)
    notes.command(name="retry")(retry_notifications_command)
    app.add_typer(notes, name="notifications")


# ---------------------------------------------------------------- backend choice


def _backend(
    state: Path | None,
    database: str | None,
    daemon: str | None,
    rules: Path | None = None,
    env: str | None = None,
    *,
    context: typer.Context | None = None,
):
    from runtime.client import BackendError, LocalBackend, RemoteBackend
    from runtime.store import StoreError, database_url

    state, database, daemon = typed_over_environment(context, state, database, daemon)
    given = (("state", state), ("database", database), ("daemon", daemon))
    chosen = [store_option_name(context, name) for name, value in given if value]
    if len(chosen) != 1:
        problem = "none was given" if not chosen else f"{' and '.join(chosen)} were given"
        _fail(f"pass exactly one of --state DIR, --database URL or --daemon URL ({problem})", EXIT_USAGE)
    if daemon:
        return RemoteBackend(daemon, os.environ.get("IRULES_API_TOKEN"))
    try:
        return LocalBackend(database_url(state, database), rules, env)
    except (StoreError, BackendError) as error:
        _fail(str(error), EXIT_USAGE)


def _fail(message: str, status: int = EXIT_PROBLEMS) -> None:
    print(f"irules: {message}", file=sys.stderr)
    raise typer.Exit(status)


def _incident(argument: str | None, option: str | None) -> str:
    """Return the incident named by the INCIDENT_ID argument or by `--incident-id`, which every command taking one accepts."""
    if argument is not None and option is not None and argument != option:
        _fail(
            f"the INCIDENT_ID argument {argument!r} and --incident-id {option!r} name different incidents; pass only one",
            EXIT_USAGE,
        )
    reference = argument or option
    if not reference:
        _fail("missing incident: pass its id, such as INC-2026-0042, as an argument or with --incident-id", EXIT_USAGE)
    return reference


def _valid_values(name: str, open_hint: str | None = None):
    """Return a Click callback that rejects a `name` (status or severity) no incident can have, with exit 2.

    The check runs before any store is opened, so it is the same for --state,
    --database and --daemon, and a typo fails instead of matching nothing.
    """

    def check(value: str | list[str] | None) -> str | list[str] | None:
        from runtime.incidents import IncidentError, check_filter

        if value is None:
            values = []
        elif isinstance(value, str):
            values = [value]
        else:
            values = value
        try:
            check_filter(name, values, open_hint)
        except IncidentError as error:
            raise typer.BadParameter(str(error)) from None
        return value

    return check


def _actor(given: str | None) -> str:
    """Return `--as`, else the login name: of the terminal, else of LOGNAME or USER, else of the process's user."""
    if given:
        return given
    try:
        return os.getlogin()
    except OSError:
        pass
    import getpass

    try:
        # Reads LOGNAME, USER, LNAME and USERNAME, then the password database, so cron and CI jobs get a name too.
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _run(backend, operation, *args):
    from runtime.client import BackendError

    try:
        return operation(*args)
    except BackendError as error:
        _fail(str(error))
    finally:
        backend.close()


# ---------------------------------------------------------------- output

# Descriptions of the `severity_source` values, printed next to the severity.
SEVERITY_ORIGINS = {
    "rule": "set by a severity rule",
    "fallback": "the fallback level of the severity rules",
    "classifier": "set by the classifier",
    "source": "set by the source",
    "person": "set by a person",
}


def _print_incidents(rows: list[dict[str, Any]], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    # Times are UTC, as the store keeps them; the header says so, since the cells cannot.
    header = ("ID", "STATUS", "SEVERITY", "TEAM", "ALERTS", "CREATED (UTC)", "TITLE")
    lines = [header] + [
        (
            row["id"],
            row["status"],
            row["severity"] or "-",
            row["team"] or "-",
            f"{row['firing_count']}/{row['alert_count']}",
            (row["created_at"] or "")[:16].replace("T", " "),
            row["title"],
        )
        for row in rows
    ]
    # Plain columns, never cut: ids and titles must stay whole to be copied.
    widths = [max(len(line[index]) for line in lines) for index in range(len(header) - 1)]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1])


def _print_incident(row: dict[str, Any], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        print(json.dumps(row, indent=2, ensure_ascii=False))
        return
    print(f"{row['id']}  {row['title']}")
    for name in (
        "status",
        "severity",
        "team",
        "assignee",
        "acknowledged_by",
        "created_at",
        "acknowledged_at",
        "resolved_at",
        "closed_at",
    ):
        value = row.get(name)
        if not value:
            continue
        if name == "severity" and row.get("severity_source"):
            source = row["severity_source"]
            value = f"{value} ({SEVERITY_ORIGINS.get(source, f'set by {source}')})"
        print(f"  {name.replace('_', ' ')}: {value}")
    if row.get("services"):
        print(f"  services: {', '.join(row['services'])}")
    if row.get("receivers"):
        print(f"  receivers: {', '.join(row['receivers'])}")
    impact = row.get("impact")
    if impact:
        causes = impact.get("causes") or []
        cause = f", likely cause: {causes[0]['service']}" if causes else ""
        print(f"  impact: {impact['impact']}/100, urgency {impact['urgency']}/100{cause}")
    triage = row.get("triage") or {}
    if triage.get("classifier"):
        verdict = triage["classifier"]
        review = ", flagged for review" if triage.get("review") else ""
        print(f"  classifier: {verdict.get('level')} at {verdict.get('confidence', 0):.0%} confidence{review}")
    if "alerts" in row:
        print(f"  alerts ({len(row['alerts'])}):")
        name_width = max((len(alert["name"]) for alert in row["alerts"]), default=0)
        for alert in row["alerts"]:
            labels = ", ".join(f"{name}={value}" for name, value in sorted(alert["labels"].items()))
            print(f"    {alert['status']:<8} {alert['name']:<{name_width}}  {{{labels}}}")
    if "timeline" in row:
        print("  timeline (UTC):")
        entries = row["timeline"]
        kind_width = max((len(entry["kind"]) for entry in entries), default=0)
        actor_width = max((len(entry["actor"]) for entry in entries), default=0)
        for entry in entries:
            at = entry["at"][:19].replace("T", " ")
            print(f"    {at}  {entry['kind']:<{kind_width}}  {entry['actor']:<{actor_width}}  {entry['message']}")


# ---------------------------------------------------------------- commands


def handle_command(
    ctx: typer.Context,
    alert_data: Annotated[Path, typer.Option("--alert-data", help="File with one webhook payload, as a sender would post it.")],
    source: Annotated[str | None, typer.Option("--source", help="Source name; detected from the payload when left out.")] = None,
    rules: RulesOption = None,
    env: EnvOption = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    header: Annotated[
        list[str], typer.Option("--header", help="Request header NAME:VALUE to send or to consider, repeatable.")
    ] = [],  # noqa: B006
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """Feed one payload through the pipeline into a local store, or post it to a running daemon."""
    try:
        body = alert_data.read_bytes()
    except OSError as error:
        _fail(f"cannot read {alert_data}: {error.strerror}", EXIT_USAGE)
    headers = {}
    for item in header:
        name, separator, value = item.partition(":")
        if not separator:
            _fail(f"--header {item!r} is not NAME:VALUE", EXIT_USAGE)
        headers[name.strip().lower()] = value.strip()
    from runtime import logs

    logs.configure("warning")
    state, database, daemon = typed_over_environment(ctx, state, database, daemon)
    if daemon:
        _handle_remote(daemon, source, body, headers, output, state, database)
        return
    if rules is None:
        _fail("pass --rules PATH: the pipeline needs the rules", EXIT_USAGE)
    backend = _backend(state, database, None, rules, env, context=ctx)
    _handle_local(backend, source, body, headers, output)


def _handle_remote(
    daemon: str, source: str | None, body: bytes, headers: dict[str, str], output: OutputFormat, state, database
) -> None:
    from runtime.client import BackendError, RemoteBackend
    from runtime.sources import detect
    from runtime.sources.base import Inbound, Rejected

    if state or database:
        _fail("pass either --daemon or a local store, not both", EXIT_USAGE)
    if source is None:
        try:
            source = detect(Inbound(body, headers))
        except Rejected as rejected:
            # The daemon's reason ends with advice for senders; the CLI names its own option instead.
            reason = rejected.reason.removesuffix("; name the source explicitly")
            _fail(f"cannot tell the payload's source: {reason}; pass --source NAME", EXIT_USAGE)
    token = os.environ.get("IRULES_HOOK_TOKEN")
    if token and "authorization" not in headers:
        headers["authorization"] = f"Bearer {token}"
    headers.setdefault("content-type", "application/json")
    backend = RemoteBackend(daemon, os.environ.get("IRULES_API_TOKEN"))
    try:
        result = backend.post_hook(source, body, headers)
    except BackendError as error:
        _fail(str(error))
    finally:
        backend.close()
    if output is OutputFormat.JSON:
        print(json.dumps(result, indent=2))
    else:
        print(f"stored as payload {result['payload_id']} ({result['kind']}, {_count(result['alerts'], 'alert')})")


def _handle_local(backend, source: str | None, body: bytes, headers: dict[str, str], output: OutputFormat) -> None:
    import sqlalchemy as sa

    from runtime.ingest import receive
    from runtime.pipeline import Pipeline, accept, record_dead_letter
    from runtime.policy import Policy
    from runtime.secrets import Secrets
    from runtime.sources.base import Inbound, Rejected
    from runtime.store.schema import alert_events, alerts, incidents

    try:
        ruleset = backend.ruleset()
        inbound = Inbound(body, headers)
        try:
            # A file handed over on the command line is trusted: no webhook authentication.
            accepted = receive(source, inbound, ruleset, Secrets(None), check_auth=False)
        except Rejected as rejected:
            number = record_dead_letter(backend.store, source or "unknown", inbound, rejected.status, rejected.reason)
            _fail(f"payload rejected ({rejected.status}): {rejected.reason}; kept as dead letter {number}")
        (payload_id,) = accept(backend.store, [accepted])
        policy = Policy(ruleset)
        Pipeline(backend.store, lambda: policy).process_pending()
        with backend.store.read() as connection:
            keys = (
                connection.execute(
                    sa.select(incidents.c.key)
                    .distinct()
                    .select_from(
                        alert_events.join(alerts, alerts.c.fingerprint == alert_events.c.fingerprint).join(
                            incidents, incidents.c.id == alerts.c.incident_id
                        )
                    )
                    .where(alert_events.c.payload_id == payload_id)
                )
                .scalars()
                .all()
            )
        shown = [backend.show(key) for key in sorted(keys)]
    except Exception as error:
        from runtime.client import BackendError

        if isinstance(error, BackendError):
            _fail(str(error))
        raise
    finally:
        backend.close()
    if output is OutputFormat.JSON:
        print(
            json.dumps(
                {"payload_id": payload_id, "source": accepted.source, "kind": accepted.outcome.kind, "incidents": shown},
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    alerts = _count(len(accepted.outcome.alerts), "alert")
    print(f"payload {payload_id} from {accepted.source}: {accepted.outcome.kind}, {alerts}")
    for row in shown:
        _print_incident(row, OutputFormat.TEXT)


def create_command(
    ctx: typer.Context,
    title: Annotated[str, typer.Option("--title", help="What is wrong, in a few words.")],
    severity: Annotated[
        str | None, typer.Option("--severity", help="critical, high, medium or low.", callback=_valid_values("severity"))
    ] = None,
    services: Annotated[str, typer.Option("--services", help="Affected services, comma-separated.")] = "",
    team: Annotated[str | None, typer.Option("--team", help="Owning team.")] = None,
    rules: RulesOption = None,
    env: EnvOption = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    actor: ActorOption = None,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """Open an incident by hand."""
    backend = _backend(state, database, daemon, rules, env, context=ctx)
    names = [name.strip() for name in services.split(",") if name.strip()]
    row = _run(backend, backend.create, title, severity, names, team, _actor(actor))
    _print_incident(row, output)


def update_command(
    ctx: typer.Context,
    incident_argument: IncidentArgument = None,
    incident_option: IncidentOption = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="detected, triaged, investigating, mitigating, resolved or closed.",
            callback=_valid_values("status"),
        ),
    ] = None,
    assignee: Annotated[str | None, typer.Option("--assignee", help="Who works on it.")] = None,
    severity: Annotated[
        str | None, typer.Option("--severity", help="critical, high, medium or low.", callback=_valid_values("severity"))
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="A note for the timeline.")] = None,
    session: Annotated[
        str | None, typer.Option("--session", help="Link an assistant's session id (such as Claude Code's) to the incident.")
    ] = None,
    session_provider: Annotated[
        str, typer.Option("--session-provider", help="The assistant of --session: claude-code, anthropic or local.")
    ] = "claude-code",
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    actor: ActorOption = None,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """Change an incident's status, assignee or severity, add a note, or link an assistant's session."""
    from runtime.incidents import Change

    incident_id = _incident(incident_argument, incident_option)
    if status is None and assignee is None and severity is None and note is None and session is None:
        _fail("nothing to change: pass --status, --assignee, --severity, --note or --session", EXIT_USAGE)
    if session is not None:
        from runtime.commands.assist import ProviderName, link_session_command

        if daemon:
            _fail("--session links through the store: pass --state or --database, not --daemon", EXIT_USAGE)
        try:
            provider = ProviderName(session_provider)
        except ValueError:
            _fail(f"unknown --session-provider {session_provider!r}; use claude-code, anthropic or local", EXIT_USAGE)
        link_session_command(
            incident_id=incident_id,
            session=session,
            provider=provider,
            state=state,
            database=database,
            actor=actor,
            output=output,
        )
        if status is None and assignee is None and severity is None and note is None:
            return
    backend = _backend(state, database, daemon, context=ctx)
    row = _run(
        backend,
        backend.update,
        incident_id,
        Change(status=status, assignee=assignee, severity=severity, note=note),
        _actor(actor),
    )
    _print_incident(row, output)


def ack_command(
    ctx: typer.Context,
    incident_argument: IncidentArgument = None,
    incident_option: IncidentOption = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    actor: ActorOption = None,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """Acknowledge an incident."""
    incident_id = _incident(incident_argument, incident_option)
    backend = _backend(state, database, daemon, context=ctx)
    _print_incident(_run(backend, backend.acknowledge, incident_id, _actor(actor)), output)


def resolve_command(
    ctx: typer.Context,
    incident_argument: IncidentArgument = None,
    incident_option: IncidentOption = None,
    note: Annotated[str | None, typer.Option("--note", help="How it was resolved, for the timeline.")] = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    actor: ActorOption = None,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """Resolve an incident."""
    from runtime.incidents import Change

    incident_id = _incident(incident_argument, incident_option)
    backend = _backend(state, database, daemon, context=ctx)
    _print_incident(_run(backend, backend.update, incident_id, Change(status="resolved", note=note), _actor(actor)), output)


def list_command(
    ctx: typer.Context,
    status: Annotated[
        list[str],
        typer.Option(
            "--status",
            help="Only this status: detected, triaged, investigating, mitigating, resolved or closed; repeatable. "
            "--open selects the statuses before resolved.",
            callback=_valid_values("status", open_hint="--open"),
        ),
    ] = [],  # noqa: B006
    severity: Annotated[
        list[str],
        typer.Option(
            "--severity",
            help="Only this severity: critical, high, medium or low; repeatable.",
            callback=_valid_values("severity"),
        ),
    ] = [],  # noqa: B006
    team: Annotated[str | None, typer.Option("--team", help="Only this team's incidents.")] = None,
    service: Annotated[str | None, typer.Option("--service", help="Only incidents affecting this service.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only incidents not yet resolved or closed.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 100,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """List incidents, newest first."""
    backend = _backend(state, database, daemon, context=ctx)
    rows = _run(
        backend,
        lambda: backend.list(status=status, severity=severity, team=team, service=service, open_only=open_only, limit=limit),
    )
    _print_incidents(rows, output)


def show_command(
    ctx: typer.Context,
    incident_argument: IncidentArgument = None,
    incident_option: IncidentOption = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """Show one incident with its alerts and timeline."""
    incident_id = _incident(incident_argument, incident_option)
    backend = _backend(state, database, daemon, context=ctx)
    _print_incident(_run(backend, backend.show, incident_id), output)


# Failure and dismissal reasons in the REPLAY column of `dead-letters list` are cut to
# this many characters, so the table stays readable; `--format json` has them whole.
REPLAY_DETAIL_WIDTH = 40
# A bulk replay that skips letters names at most this many of their ids.
SKIPPED_IDS_SHOWN = 10


def dead_letters_command(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option("--source", help="Only this source's dead letters.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Include dismissed dead letters.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many, newest first.")] = 100,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """List dead letters, newest first, with their replay state; dismissed ones only with --all."""
    from runtime.dead_letters import STATES

    backend = _backend(state, database, daemon, context=ctx)
    states = None if show_all else [name for name in STATES if name != "dismissed"]
    rows = _run(backend, backend.dead_letters, source, states, limit)
    if output is OutputFormat.JSON:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    header = ("ID", "RECEIVED (UTC)", "SOURCE", "STATUS", "REPLAY", "REASON")
    lines = [header] + [
        (
            str(row["id"]),
            _minute(row["received_at"]),
            _printable(row["source"]),
            str(row["status"]),
            _replay_cell(row),
            _printable(row["reason"]),
        )
        for row in rows
    ]
    widths = [max(len(line[index]) for line in lines) for index in range(len(header) - 1)]
    for line in lines:
        cells = [line[0].rjust(widths[0])] + [cell.ljust(width) for cell, width in zip(line[1:-1], widths[1:], strict=True)]
        print("  ".join(cells) + "  " + line[-1])


def _replay_cell(row: dict[str, Any]) -> str:
    """Describe a dead letter's state for the REPLAY column, such as `failed 2026-12-05 17:50 (422: unknown format)`."""
    match row.get("state"):  # a daemon older than this CLI sends no state
        case "replayed":
            return f"replayed {_minute(row['replayed_at'])}"
        case "dismissed":
            reason = f" ({_shortened(row['dismiss_reason'])})" if row["dismiss_reason"] else ""
            return f"dismissed {_minute(row['dismissed_at'])} by {_printable(row['dismissed_by'] or '-')}{reason}"
        case "untrusted":
            # Rejected before the sender was authenticated, so `irules replay` skips it.
            return "never (not authenticated)"
        case "failed":
            # Replays that failed before the store recorded their time show none.
            attempted = f" {_minute(row['replay_attempted_at'])}" if row["replay_attempted_at"] else ""
            return f"failed{attempted} ({_shortened(row['replay_outcome'])})"
        case _:
            return "pending"


def _count(number: int, noun: str) -> str:
    """Return `1 alert` or `3 alerts`."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _minute(moment: str) -> str:
    """Return an ISO 8601 time as `2026-12-05 17:50`, like the other tables of the CLI."""
    return moment[:16].replace("T", " ")


def _printable(text: str) -> str:
    """Return `text` on one line with control characters replaced, because reasons may quote what a sender posted."""
    return "".join(character if character.isprintable() else " " for character in text)


def _shortened(text: str) -> str:
    text = " ".join(_printable(text).split())
    return text if len(text) <= REPLAY_DETAIL_WIDTH else text[: REPLAY_DETAIL_WIDTH - 1] + "…"


def dismiss_dead_letters_command(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(help="Ids of the dead letters to dismiss.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why they will not be replayed, kept with each letter.")] = None,
    actor: ActorOption = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """Dismiss dead letters that will not be replayed: kept for audit, left out of bulk replays and of `list` without --all."""
    backend = _backend(state, database, daemon, context=ctx)
    dismissed_by = _actor(actor)
    results, error = _each(
        backend, list(dict.fromkeys(ids)), lambda number: backend.dismiss_dead_letter(number, reason, dismissed_by)
    )
    _print_outcomes(results, output)
    if error is not None:
        _fail(error)


def replay_command(
    ctx: typer.Context,
    ids: Annotated[
        list[int] | None, typer.Argument(help="Dead letter ids; when left out, every pending one (not tried yet).")
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Without ids, also replay the dead letters whose last replay failed."),
    ] = False,
    rules: RulesOption = None,
    env: EnvOption = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """Feed dead letters through the current rules again, after a fix. Exit 1 when any fails.

    A letter named by id is always tried, unless it was rejected before its sender was authenticated.

    Without ids, letters whose last replay failed are skipped, because most failures repeat until the rules change.
    Name them or pass --retry-failed to try them again.
    """
    from runtime.client import BackendError

    backend = _backend(state, database, daemon, rules, env, context=ctx)
    skipped: list[int] = []
    if ids:
        numbers = sorted(set(ids))
    else:
        try:
            numbers, skipped = _replay_candidates(backend, retry_failed)
        except BackendError as error:
            backend.close()
            _fail(str(error))
    results, error = _each(backend, numbers, backend.replay)
    if output is OutputFormat.JSON:
        detail = "its last replay failed; name its id or pass --retry-failed to replay it again"
        results += [{"id": number, "outcome": "skipped", "detail": detail, "payload_id": None} for number in skipped]
    _print_outcomes(results, output)
    if output is OutputFormat.TEXT and skipped:
        print(_skipped_summary(skipped))
    if output is OutputFormat.TEXT and not results and not skipped and error is None:
        print("no dead letters to replay")
    if error is not None:
        _fail(error)
    raise typer.Exit(EXIT_PROBLEMS if any(result["outcome"] == "failed" for result in results) else EXIT_OK)


def _skipped_summary(skipped: list[int]) -> str:
    listed_ids = ", ".join(str(number) for number in skipped[:SKIPPED_IDS_SHOWN])
    if len(skipped) > SKIPPED_IDS_SHOWN:
        listed_ids += ", …"
    return (
        f"skipped {_count(len(skipped), 'dead letter')} whose last replay failed ({listed_ids}); "
        f"to replay {'it' if len(skipped) == 1 else 'them'} again, name the ids or run `irules replay --retry-failed`"
    )


def _replay_candidates(backend, retry_failed: bool) -> tuple[list[int], list[int]]:
    """Return the ids that a replay without ids tries and those it skips because their last replay failed, oldest first."""
    from runtime.dead_letters import LIST_LIMIT_MAX

    chosen: list[int] = []
    skipped: list[int] = []
    before = None
    while True:
        page = backend.dead_letters(None, ("pending", "failed"), LIST_LIMIT_MAX, before)
        for row in page:
            (skipped if row.get("state") == "failed" and not retry_failed else chosen).append(row["id"])
        if len(page) < LIST_LIMIT_MAX:
            return sorted(chosen), sorted(skipped)
        before = page[-1]["id"]


def _each(backend, numbers: list[int], operation) -> tuple[list[dict[str, Any]], str | None]:
    """Run `operation` on each id in turn and close the backend; stop at the first error and return it with the results so far."""
    from runtime.client import BackendError

    results: list[dict[str, Any]] = []
    try:
        for number in numbers:
            results.append(operation(number))
    except BackendError as error:
        return results, str(error)
    finally:
        backend.close()
    return results, None


def _print_outcomes(results: list[dict[str, Any]], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    for result in results:
        detail = f" ({_printable(result['detail'])})" if result.get("detail") else ""
        print(f"dead letter {result['id']}: {result['outcome']}{detail}")


def notifications_command(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="pending, sending, delivered, failed, cancelled or folded.")
    ] = None,
    incident: Annotated[str | None, typer.Option("--incident-id", help="Only this incident's notifications.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 100,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """List notifications, newest first; `--status failed` shows those given up on."""
    backend = _backend(state, database, daemon, context=ctx)
    rows = _run(backend, backend.notifications, status, incident, limit)
    if output is OutputFormat.JSON:
        print(json.dumps(rows, indent=2))
        return
    # The header comes even without rows, as in `incidents list`, so an empty outbox shows as empty.
    print(f"{'ID':>6}  {'CREATED (UTC)':<19}  {'INCIDENT':<16} {'EVENT':<12} {'CHANNEL':<10} {'STATUS':<10} TRIES  DETAIL")
    for row in rows:
        print(
            f"{row['id']:>6}  {row['created_at'][:19]}  {row['incident'] or '-':<16} {row['event']:<12} {row['channel']:<10} "
            f"{row['status']:<10} {row['attempts']:>5}  {row['receiver'] or '-'} ({row['endpoint']})"
            + (f": {row['last_error']}" if row["last_error"] and row["status"] != "delivered" else "")
        )


def retry_notifications_command(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(help="Notification ids; all failed ones when left out.")] = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
) -> None:
    """Send failed notifications again, with their attempts counted from zero."""
    from runtime.client import BackendError

    backend = _backend(state, database, daemon, context=ctx)
    try:
        numbers = list(ids or [row["id"] for row in backend.notifications("failed", None, 1000)])
        results = [backend.retry_notification(number) for number in sorted(numbers)]
    except BackendError as error:
        _fail(str(error))
    finally:
        backend.close()
    for result in results:
        print(f"notification {result['id']}: queued again ({result['event']} via {result['channel']} to {result['receiver']})")
    if not results:
        print("no failed notifications")
