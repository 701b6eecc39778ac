"""`irules daemon`: receive alerts, keep incidents, reload the rules on change."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from runtime.commands.common import EXIT_PROBLEMS, EXIT_USAGE, EnvOption, require_path

RulesOption = Annotated[
    Path, typer.Option("--rules", envvar="IRULES_RULES", help="Folder of .irules files, one file, or a compiled ruleset.json.")
]
StateOption = Annotated[
    Path | None,
    typer.Option("--state", envvar="IRULES_STATE", help="Folder of the embedded SQLite store (irules.db); created when missing."),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", envvar="IRULES_DATABASE", help="SQLAlchemy URL of the store, e.g. postgresql://user@host/db."),
]


def register(app: typer.Typer) -> None:
    app.command(name="daemon")(daemon_command)


def parse_listen(text: str) -> tuple[str, int]:
    host, separator, port = text.rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{text!r} is not HOST:PORT, e.g. 127.0.0.1:8080", param_hint="--listen")
    return host.strip("[]") or "127.0.0.1", int(port)


def daemon_command(
    rules: RulesOption,
    env: EnvOption = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    listen: Annotated[
        str, typer.Option("--listen", envvar="IRULES_LISTEN", help="Address and port to serve HTTP on.")
    ] = "127.0.0.1:8080",
    secrets_dir: Annotated[
        Path | None,
        typer.Option(
            "--secrets-dir",
            envvar="IRULES_SECRETS_DIR",
            help="Folder with one file per secret; overrides the rules' secrets_dir.",
        ),
    ] = None,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated",
            envvar="IRULES_ALLOW_UNAUTHENTICATED",
            help="Accept webhooks for sources without a declared `auth` (for trials on loopback only).",
        ),
    ] = False,
    no_watch: Annotated[bool, typer.Option("--no-watch", help="Load the rules once; do not reload when they change.")] = False,
    no_notify: Annotated[
        bool,
        typer.Option(
            "--no-notify",
            envvar="IRULES_NO_NOTIFY",
            help="Keep incidents but send no notifications and fire no escalations (for trials and benchmarks).",
        ),
    ] = False,
    no_runbooks: Annotated[
        bool,
        typer.Option(
            "--no-runbooks",
            envvar="IRULES_NO_RUNBOOKS",
            help="Start no automatic runbook and execute no run; runs wait in the store until a start without it.",
        ),
    ] = False,
    durability: Annotated[
        str,
        typer.Option(
            "--sqlite-sync",
            envvar="IRULES_SQLITE_SYNC",
            help="SQLite commit durability: normal (survives a crash) or full (survives power loss).",
        ),
    ] = "normal",
    lease_time: Annotated[
        str,
        typer.Option(
            "--lease-time",
            envvar="IRULES_LEASE_TIME",
            help="How long a silent node's runbook runs and notifications being sent stay its own before another node takes them over, e.g. 30s.",
        ),
    ] = "30s",
    retain_incidents: Annotated[
        str,
        typer.Option(
            "--retain-incidents",
            envvar="IRULES_RETAIN_INCIDENTS",
            help="How long ended incidents are kept, with their alerts, timeline, notifications and runs, e.g. 90d.",
        ),
    ] = "90d",
    retain_dead_letters: Annotated[
        str,
        typer.Option(
            "--retain-dead-letters", envvar="IRULES_RETAIN_DEAD_LETTERS", help="How long dead letters are kept, e.g. 30d."
        ),
    ] = "30d",
    retain_payloads: Annotated[
        str,
        typer.Option(
            "--retain-payloads",
            envvar="IRULES_RETAIN_PAYLOADS",
            help="How long received payloads and their applied alert events are kept, e.g. 7d.",
        ),
    ] = "7d",
    retention_every: Annotated[
        str,
        typer.Option(
            "--retention-every",
            envvar="IRULES_RETENTION_EVERY",
            help="How often one node deletes what is past its retention period, e.g. 10m; at most once per heartbeat (5 s, or a third of --lease-time).",
        ),
    ] = "10m",
    spool: Annotated[
        Path | None,
        typer.Option(
            "--spool",
            envvar="IRULES_SPOOL",
            # Parentheses, not brackets: Rich reads `[...]` in help text as markup and drops it.
            help="Folder that keeps webhook payloads while the database is unreachable "
            "(default: <state>/spool with --state, else /var/lib/irules/spool).",
        ),
    ] = None,
    spool_limit: Annotated[
        int,
        typer.Option(
            "--spool-limit",
            envvar="IRULES_SPOOL_LIMIT",
            min=1,
            help="Maximum bytes of payloads in the spool; beyond it, webhooks get 503 during an outage.",
        ),
    ] = 1024**3,
    log_format: Annotated[
        str, typer.Option("--log-format", envvar="IRULES_LOG_FORMAT", help="text or json (one JSON object per line).")
    ] = "text",
    log_level: Annotated[
        str, typer.Option("--log-level", envvar="IRULES_LOG_LEVEL", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run the incident daemon: webhooks in, incidents out, rules reloaded on every save.

    Settings come from flags first, then IRULES_* environment variables, then the rules.
    The API requires `Authorization: Bearer <token>` when IRULES_API_TOKEN is set.
    IRULES_SLACK_API_URL, IRULES_PAGERDUTY_EVENTS_URL, IRULES_TWILIO_API_URL and
    IRULES_SLACK_HOOKS_URL point notifications at other hosts, such as a proxy.
    Runbook `query prometheus` steps ask IRULES_PROMETHEUS_URL; programs run by
    runbooks see PATH, HOME, locale and KUBECONFIG, plus the variables named in
    IRULES_RUNBOOK_ENV (comma-separated).
    """
    import os

    import anyio

    from runtime import logs
    from runtime.daemon.service import Daemon, DaemonConfig, ListenError
    from runtime.retention import RetentionSettings
    from runtime.store import StoreError, database_url

    require_path(rules)
    if log_format not in ("text", "json") or durability not in ("normal", "full"):
        print("irules: --log-format takes text or json, and --sqlite-sync takes normal or full", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    if state is None and database is None:
        state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "irules"
    host, port = parse_listen(listen)
    durations = _durations(
        {
            "--lease-time": lease_time,
            "--retain-incidents": retain_incidents,
            "--retain-dead-letters": retain_dead_letters,
            "--retain-payloads": retain_payloads,
            "--retention-every": retention_every,
        }
    )
    logs.configure(log_level, json_lines=log_format == "json")
    try:
        url = database_url(state, database)
    except StoreError as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from error
    config = DaemonConfig(
        rules=rules,
        environment=env,
        database_url=url,
        host=host,
        port=port,
        secrets_dir=secrets_dir,
        allow_unauthenticated=allow_unauthenticated,
        api_token=os.environ.get("IRULES_API_TOKEN") or None,
        watch=not no_watch,
        durability=durability,
        endpoints=_endpoints(os.environ),
        notify=not no_notify,
        runbooks=not no_runbooks,
        prometheus_url=os.environ.get("IRULES_PROMETHEUS_URL") or None,
        runbook_environment=tuple(name for name in os.environ.get("IRULES_RUNBOOK_ENV", "").split(",") if name),
        lease_s=durations["--lease-time"],
        spool_dir=spool or (state / "spool" if state is not None else DEFAULT_SPOOL_DIR),
        spool_limit=spool_limit,
        retention=RetentionSettings(
            incidents_s=durations["--retain-incidents"],
            dead_letters_s=durations["--retain-dead-letters"],
            payloads_s=durations["--retain-payloads"],
            every_s=durations["--retention-every"],
        ),
    )
    try:
        anyio.run(Daemon(config).serve, backend_options=_event_loop_options())
    except StoreError as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from error
    except ListenError as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_PROBLEMS) from error


# The spool of a daemon on PostgreSQL without --spool; systemd's `StateDirectory=irules` creates /var/lib/irules.
DEFAULT_SPOOL_DIR = Path("/var/lib/irules/spool")


def _durations(texts: dict[str, str]) -> dict[str, float]:
    """Parse each option's duration (`30s`, `15m`, `90d`) to seconds, and exit with a usage error on an invalid one."""
    import re

    from compiler.transform import duration_seconds

    seconds = {}
    for option, text in texts.items():
        valid = re.fullmatch(r"(?:\d+(?:ms|s|m|h|d|w))+", text.strip()) is not None
        value = duration_seconds(text.strip()) if valid else 0.0
        if value <= 0:
            print(
                f"irules: invalid duration for {option}: {text!r}; use a number and a unit, such as 30s, 15m or 90d",
                file=sys.stderr,
            )
            raise typer.Exit(EXIT_USAGE)
        seconds[option] = value
    return seconds


def _endpoints(environ):  # type: ignore[no-untyped-def]
    """Return the SaaS endpoints, each overridable by an environment variable."""
    from runtime.notify.model import Endpoints

    defaults = Endpoints()
    return Endpoints(
        slack_api=environ.get("IRULES_SLACK_API_URL") or defaults.slack_api,
        pagerduty_events=environ.get("IRULES_PAGERDUTY_EVENTS_URL") or defaults.pagerduty_events,
        twilio_api=environ.get("IRULES_TWILIO_API_URL") or defaults.twilio_api,
        slack_hooks=environ.get("IRULES_SLACK_HOOKS_URL") or defaults.slack_hooks,
    )


def _event_loop_options() -> dict[str, bool]:
    """Use uvloop, which uvicorn[standard] installs, for a faster event loop; plain asyncio without it."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}
