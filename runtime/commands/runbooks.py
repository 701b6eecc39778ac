"""Runbook commands: test-runbook (the plan of a run), remediate, runs list|show, approve and deny."""

from __future__ import annotations

import json
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
    require_path,
    typed_over_environment,
)

RulesOption = Annotated[
    Path, typer.Option("--rules", envvar="IRULES_RULES", help="Folder of .irules files, one file, or a ruleset.json.")
]


def register(app: typer.Typer) -> None:
    app.command(name="test-runbook")(test_runbook_command)
    register_runs(app)


def test_runbook_command(
    runbook_id: Annotated[str, typer.Option("--runbook-id", help="The runbook's id, such as rb-001.")],
    rules: RulesOption = Path("."),
    env: EnvOption = None,
    alert_data: Annotated[
        Path | None,
        typer.Option("--alert-data", help="A webhook payload (any source) whose first alert the runbook reads."),
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="An alert label NAME=VALUE; repeatable.")] = None,
    annotation: Annotated[
        list[str] | None, typer.Option("--annotation", help="An alert annotation NAME=VALUE; repeatable.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; run nothing.")] = False,
    approve: Annotated[
        list[str] | None,
        typer.Option("--approve", help="Without --dry-run: grant this step's approval up front; repeatable."),
    ] = None,
    auto_approve_safe: Annotated[
        bool,
        typer.Option("--auto-approve-safe", help="Without --dry-run: grant the approvals of read-only and low-risk steps."),
    ] = False,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="Without --dry-run: keep the run's record in this folder's store (default: discarded)."),
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Text or JSON.")] = OutputFormat.TEXT,
) -> None:
    """Print the plan of a runbook for an alert, and without --dry-run, run it on this host.

    The plan shows each step's argv or request, conditions, approvals and side effects.
    A run executes the steps here, printing each as it starts and ends; approvals not
    granted with --approve or --auto-approve-safe are asked on the terminal, or denied
    without one. Exit 1 when a value is rejected or the run fails, 2 on usage errors.
    """
    from runtime.daemon.rules import RulesError, load_ruleset
    from runtime.runbooks.plan import build_plan, format_plan

    require_path(rules)
    if dry_run and (approve or auto_approve_safe or state is not None):
        print("irules: --approve, --auto-approve-safe and --state apply to runs, not to --dry-run", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    try:
        ruleset = load_ruleset(rules, env)
    except RulesError as error:
        print("irules: the rules have errors:\n" + "\n".join(error.diagnostics), file=sys.stderr)
        raise typer.Exit(EXIT_PROBLEMS) from error
    runbook = next((item for item in ruleset.runbooks if item.id == runbook_id), None)
    if runbook is None:
        known = ", ".join(item.id for item in ruleset.runbooks) or "none"
        print(f"irules: no runbook {runbook_id!r} in the rules (declared: {known})", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    values = _alert_values(ruleset, alert_data, label or [], annotation or [])
    plan = build_plan(ruleset, runbook, values)
    if output is OutputFormat.JSON and dry_run:
        print(json.dumps(plan.to_json(), indent=2, default=str))
    elif output is OutputFormat.TEXT:
        sys.stdout.write(format_plan(plan))
    rejected = [step for step in plan.steps if step.rejected]
    if dry_run or rejected:
        if rejected and not dry_run:
            print("irules: nothing was run, because the plan rejects a value", file=sys.stderr)
        raise typer.Exit(EXIT_PROBLEMS if rejected else EXIT_OK)
    unknown = sorted(set(approve or []) - {step.name for step in runbook.steps})
    if unknown:
        print(f"irules: --approve names no step of {runbook.id}: {', '.join(unknown)}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(_run_here(ruleset, runbook, values, set(approve or []), auto_approve_safe, state, output))


def _run_here(
    ruleset: Any,
    runbook: Any,
    values: dict[str, Any],
    approve: set[str],
    auto_approve_safe: bool,
    state: Path | None,
    output: OutputFormat,
) -> int:
    """Run the runbook on this host in a store of its own; return the exit code."""
    import os
    import tempfile

    import anyio

    from runtime.policy import Policy
    from runtime.runbooks import runs
    from runtime.runbooks.local import LocalApprovals, run_locally, terminal_prompt
    from runtime.runbooks.steps import RunnerSettings
    from runtime.store import Store, database_url

    settings = RunnerSettings(
        prometheus_url=os.environ.get("IRULES_PROMETHEUS_URL") or None,
        environment=tuple(name for name in os.environ.get("IRULES_RUNBOOK_ENV", "").split(",") if name),
    )
    approvals = LocalApprovals(frozenset(approve), terminal_prompt if sys.stdin.isatty() else None)
    progress = sys.stdout if output is OutputFormat.TEXT else sys.stderr
    with tempfile.TemporaryDirectory(prefix="irules-test-runbook-") as scratch:
        store = Store.open(database_url(state or Path(scratch), None))
        try:
            if output is OutputFormat.TEXT:
                print(f"\nrunning {runbook.id} on this host")
            policy = Policy(ruleset)
            run_id, result = anyio.run(
                lambda: run_locally(
                    store,
                    policy,
                    runbook,
                    values,
                    approvals=approvals,
                    auto_approve_safe=auto_approve_safe,
                    settings=settings,
                    out=progress,
                )
            )
            shown = runs.show_run(store, run_id)
        finally:
            store.close()
    if output is OutputFormat.JSON:
        print(json.dumps(shown, indent=2))
    else:
        print(f"\nrun {result.state}" + (f": {result.detail}" if result.detail else ""))
        if state is not None:
            print(f"the record is in {state} (irules runs show {run_id} --state {state})")
    return EXIT_OK if result.state == "succeeded" else EXIT_PROBLEMS


def _alert_values(ruleset: Any, alert_data: Path | None, labels: list[str], annotations: list[str]) -> dict[str, Any]:
    """Return the values conditions and templates read: the payload's first firing alert, then `--label` and `--annotation`."""
    from runtime.alerts import Alert
    from runtime.policy import Policy, alert_values
    from runtime.runbooks.operations import template_values
    from runtime.sources import detect, normalise
    from runtime.sources.base import Inbound, Rejected

    policy = Policy(ruleset)
    alert = Alert(source="cli", name="", status="firing", labels={})
    if alert_data is not None:
        try:
            inbound = Inbound(alert_data.read_bytes(), {})
            outcome = normalise(detect(inbound), inbound, ruleset)
        except OSError as error:
            print(f"irules: cannot read {alert_data}: {error.strerror}", file=sys.stderr)
            raise typer.Exit(EXIT_USAGE) from error
        except Rejected as rejected:
            print(f"irules: {alert_data} is not an alert payload irules reads: {rejected.reason}", file=sys.stderr)
            raise typer.Exit(EXIT_USAGE) from rejected
        firing = [item for item in outcome.alerts if item.status == "firing"] or outcome.alerts
        if firing:
            alert = firing[0]
    for option, items, target in (("--label", labels, alert.labels), ("--annotation", annotations, alert.annotations)):
        for item in items:
            name, separator, value = item.partition("=")
            if not separator or not name:
                print(f"irules: {option} takes NAME=VALUE, not {item!r}", file=sys.stderr)
                raise typer.Exit(EXIT_USAGE)
            target[name] = value
    if not alert.name:
        alert.name = alert.labels.get("alertname", "")
    values = template_values(alert_values(alert, policy.service_of(alert.labels)))
    values["incident"] = {"id": "INC-DRY-RUN", "title": alert.name, "status": "detected"}
    return values


# ---------------------------------------------------------------- runs in a store

StateOption = Annotated[Path | None, typer.Option("--state", envvar="IRULES_STATE", help="Folder of the embedded SQLite store.")]
DatabaseOption = Annotated[str | None, typer.Option("--database", envvar="IRULES_DATABASE", help="SQLAlchemy URL of the store.")]
ActorOption = Annotated[str | None, typer.Option("--as", envvar="IRULES_ACTOR", help="Who decides; defaults to the login name.")]
DaemonOption = Annotated[
    str | None,
    typer.Option("--daemon", envvar="IRULES_DAEMON", help="URL of a running daemon, instead of --state or --database."),
]


def _remote(daemon: str):  # type: ignore[no-untyped-def]
    import os

    from runtime.client import RemoteBackend

    return RemoteBackend(daemon, os.environ.get("IRULES_API_TOKEN"))


def register_runs(app: typer.Typer) -> None:
    group = typer.Typer(help="Runbook runs: their steps, outputs and approvals.", no_args_is_help=True)
    group.command(name="list")(runs_list_command)
    group.command(name="show")(runs_show_command)
    app.add_typer(group, name="runs")
    app.command(name="approve")(approve_command)
    app.command(name="deny")(deny_command)
    app.command(name="remediate")(remediate_command)


def _store(state: Path | None, database: str | None):  # type: ignore[no-untyped-def]
    from runtime.store import Store, StoreError, database_url

    if (state is None) == (database is None):
        print("irules: pass exactly one of --state DIR or --database URL", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    try:
        return Store.open(database_url(state, database))
    except StoreError as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from error


def _actor(actor: str | None) -> str:
    import getpass

    return actor or getpass.getuser()


def runs_list_command(
    ctx: typer.Context,
    incident: Annotated[str | None, typer.Option("--incident-id", help="Only this incident's runs.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="running, waiting, succeeded, failed or cancelled.")] = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Text or JSON.")] = OutputFormat.TEXT,
) -> None:
    """List runbook runs, newest first."""
    state, database, daemon = typed_over_environment(ctx, state, database, daemon)
    from runtime.client import BackendError
    from runtime.runbooks import runs

    if daemon:
        try:
            rows = _remote(daemon).runs(incident, status)
        except BackendError as error:
            print(f"irules: {error}", file=sys.stderr)
            raise typer.Exit(EXIT_PROBLEMS) from error
    else:
        rows = runs.list_runs(_store(state, database), incident=incident, status=status)
    if output is OutputFormat.JSON:
        print(json.dumps(rows, indent=2))
        return
    if rows:
        print(f"{'RUN':>5}  {'RUNBOOK':<16} {'INCIDENT':<16} {'STATUS':<10} {'TRIGGER':<8} {'STARTED':<19}  DETAIL")
    for row in rows:
        print(
            f"{row['id']:>5}  {row['runbook']:<16} {row['incident'] or '-':<16} {row['status']:<10} {row['trigger']:<8} "
            f"{row['created_at'][:19]}  {row['detail'] or ''}"
        )


def runs_show_command(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(help="The run's number.")],
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Text or JSON.")] = OutputFormat.TEXT,
) -> None:
    """Show a run: each step's state, the exact operation, its output, and the approvals."""
    state, database, daemon = typed_over_environment(ctx, state, database, daemon)
    from runtime.client import BackendError
    from runtime.incidents import IncidentError
    from runtime.runbooks import runs

    try:
        shown = _remote(daemon).run(run_id) if daemon else runs.show_run(_store(state, database), run_id)
    except (IncidentError, BackendError) as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_PROBLEMS) from error
    if output is OutputFormat.JSON:
        print(json.dumps(shown, indent=2))
        return
    print(f"run {shown['id']}: runbook {shown['runbook']} for {shown['incident'] or 'no incident'}, {shown['status']}")
    if shown["detail"]:
        print(f"  {shown['detail']}")
    for step in shown["steps"]:
        print(
            f"  {step['name']:<22} {step['state']:<12} attempt {step['attempt']}"
            + (f"  {step['detail']}" if step["detail"] else "")
        )
        if step["operation"].get("argv"):
            import shlex

            print(f"  {'':<22} argv: {shlex.join(step['operation']['argv'])}")
    for item in shown["approvals"]:
        who = f" by {item['decided_by']}" if item["decided_by"] else ""
        print(f"  {item['kind']} of step {item['step']} ({item['team'] or 'anyone'}): {item['status']}{who}")


def _decide(run_id: int, step: str, answer: str, actor: str | None, note: str | None, state, database, daemon) -> None:  # type: ignore[no-untyped-def]
    import datetime

    from runtime.client import BackendError
    from runtime.incidents import IncidentError
    from runtime.runbooks import runs

    try:
        if daemon:
            result = _remote(daemon).decide_step(run_id, step, answer, _actor(actor), note)
        else:
            result = runs.decide(
                _store(state, database), run_id, step, answer, _actor(actor), datetime.datetime.now(datetime.UTC), note
            )
    except BackendError as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_PROBLEMS) from error
    except IncidentError as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_PROBLEMS if error.status != 400 else EXIT_USAGE) from error
    print(f"run {run_id}, step {step}: {result['status']} by {result['decided_by']}")


NoteOption = Annotated[str | None, typer.Option("--note", help="Why, for the timeline.")]
DecisionOption = Annotated[
    str | None,
    typer.Option("--decision", help="For a step interrupted by a crash: retry, skip or fail (instead of approving)."),
]


def approve_command(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(help="The run's number.")],
    step: Annotated[str, typer.Argument(help="The step waiting for approval.")],
    decision: DecisionOption = None,
    note: NoteOption = None,
    actor: ActorOption = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
) -> None:
    """Approve a step that waits for approval, or decide on an interrupted step with --decision."""
    state, database, daemon = typed_over_environment(ctx, state, database, daemon)
    _decide(run_id, step, decision or "granted", actor, note, state, database, daemon)


def deny_command(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(help="The run's number.")],
    step: Annotated[str, typer.Argument(help="The step waiting for approval.")],
    note: NoteOption = None,
    actor: ActorOption = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
) -> None:
    """Deny a step that waits for approval; the step fails and nothing it would do happens."""
    state, database, daemon = typed_over_environment(ctx, state, database, daemon)
    _decide(run_id, step, "denied", actor, note, state, database, daemon)


def remediate_command(
    ctx: typer.Context,
    incident_id: Annotated[str, typer.Option("--incident-id", help="Incident id such as INC-2026-0042, or its number.")],
    rules: RulesOption = Path("."),
    env: EnvOption = None,
    runbook_id: Annotated[str | None, typer.Option("--runbook-id", help="Start only this runbook.")] = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    daemon: DaemonOption = None,
    actor: ActorOption = None,
    auto_approve_safe: Annotated[
        bool,
        typer.Option(
            "--auto-approve-safe",
            help="Grant the approvals of read-only and low-risk steps in your name; others still wait for a person.",
        ),
    ] = False,
) -> None:
    """Start the runbooks that apply to an incident's first firing alert; a running daemon executes them."""
    state, database, daemon = typed_over_environment(ctx, state, database, daemon)
    import datetime

    from runtime.client import BackendError
    from runtime.daemon.rules import RulesError, load_ruleset
    from runtime.incidents import IncidentError
    from runtime.policy import Policy
    from runtime.runbooks import runs

    try:
        if daemon:
            results = _remote(daemon).remediate(incident_id, runbook_id, _actor(actor), auto_approve_safe)
        else:
            store = _store(state, database)
            try:
                ruleset = load_ruleset(rules, env)
            except RulesError as error:
                print("irules: the rules have errors:\n" + "\n".join(error.diagnostics), file=sys.stderr)
                raise typer.Exit(EXIT_PROBLEMS) from error
            now = datetime.datetime.now(datetime.UTC)
            results = runs.remediate(store, Policy(ruleset), incident_id, _actor(actor), now, runbook_id, auto_approve_safe)
    except (IncidentError, BackendError) as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_PROBLEMS) from error
    if not results:
        print(f"irules: no runbook applies to {incident_id}", file=sys.stderr)
        raise typer.Exit(EXIT_PROBLEMS)
    for result in results:
        if "run" in result:
            print(
                f"runbook {result['runbook']}: run {result['run']} started; the daemon executes it (irules runs show {result['run']})"
            )
        else:
            print(f"runbook {result['runbook']}: not started: {result['refused']}")
    raise typer.Exit(EXIT_PROBLEMS if any("refused" in result for result in results) else EXIT_OK)
