"""The `assist` command (assisted diagnosis of an incident), and linking an assistant's session to an incident.

`irules assist` prints the hypotheses, each recommendation with the gate's
verdict, the citations and, for Claude Code, the command that resumes the
session. It starts the runs that the gate lets run without a person, unless
`--no-start` is given; a running daemon executes them. Text that comes from alerts or from the assistant
is printed with control characters escaped, so it cannot drive the terminal.
"""

from __future__ import annotations

import datetime
import enum
import json
import os
import shlex
import sys
import unicodedata
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from runtime.commands.common import EXIT_PROBLEMS, EXIT_USAGE, EnvOption, OutputFormat

StateOption = Annotated[Path | None, typer.Option("--state", envvar="IRULES_STATE", help="Folder of the embedded SQLite store.")]
DatabaseOption = Annotated[str | None, typer.Option("--database", envvar="IRULES_DATABASE", help="SQLAlchemy URL of the store.")]
ActorOption = Annotated[str | None, typer.Option("--as", envvar="IRULES_ACTOR", help="Who asks; defaults to the login name.")]
IncidentOption = Annotated[str, typer.Option("--incident-id", help="Incident id such as INC-2026-0042, or its number.")]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="Text or JSON.")]


class Focus(enum.StrEnum):
    ROOT_CAUSE = "root-cause"
    IMPACT = "impact"
    REMEDIATION = "remediation"


class ProviderName(enum.StrEnum):
    LOCAL = "local"
    ANTHROPIC = "anthropic"
    CLAUDE_CODE = "claude-code"


VERDICTS = {"rejected": "REJECTED", "offered": "offered for approval", "would_run": "would run automatically"}


def register(app: typer.Typer) -> None:
    app.command(name="assist")(assist_command)


def assist_command(
    incident_id: IncidentOption,
    focus: Annotated[Focus, typer.Option("--focus", help="What to look into: root-cause, impact or remediation.")],
    provider: Annotated[
        ProviderName, typer.Option("--provider", help="local (built in, no network), anthropic or claude-code.")
    ] = ProviderName.LOCAL,
    rules: Annotated[
        Path, typer.Option("--rules", envvar="IRULES_RULES", help="Folder of .irules files, one file, or a ruleset.json.")
    ] = Path("."),
    env: EnvOption = None,
    state: StateOption = None,
    database: DatabaseOption = None,
    postmortems: Annotated[
        Path | None,
        typer.Option("--postmortems", envvar="IRULES_POSTMORTEMS", help="Folder of past post-mortems in Markdown."),
    ] = None,
    actor: ActorOption = None,
    no_start: Annotated[
        bool, typer.Option("--no-start", help="Only list the recommendations; start none, even those that may run.")
    ] = False,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """Diagnose an incident: hypotheses, recommended runbooks and actions with the gate's verdict, and citations.

    Recommendations that the gate lets run without a person are started, unless
    --no-start is given. Exit 1 when the incident is unknown or the provider fails,
    2 on usage errors.
    """
    from runtime.daemon.rules import RulesError, load_ruleset
    from runtime.policy import Policy
    from runtime.triage.assist.knowledge import KnowledgeBase
    from runtime.triage.assist.service import start_recommended

    if postmortems is not None and not postmortems.is_dir():
        _fail(f"the post-mortems folder {str(postmortems)!r} does not exist", EXIT_USAGE)
    store = _store(state, database)
    try:
        ruleset = load_ruleset(rules, env)
    except RulesError as error:
        _fail("the rules have errors:\n" + "\n".join(error.diagnostics), EXIT_PROBLEMS)
    knowledge = KnowledgeBase.build(ruleset, rules if rules.is_dir() else None, postmortems)
    try:
        result = _diagnose(store, Policy(ruleset), incident_id, focus, provider, rules, _actor(actor), knowledge)
        started = [] if no_start else start_recommended(store, result, _actor(actor), datetime.datetime.now(datetime.UTC))
    finally:
        store.close()
    if output is OutputFormat.JSON:
        print(json.dumps({**result.to_json(), "started": started}, indent=2, ensure_ascii=False))
        return
    sys.stdout.write(format_result(result, _store_options(state, database)))
    for item in started:
        if "run" in item:
            print(
                f"runbook {item['runbook']}: run {item['run']} started; the daemon executes it (irules runs show {item['run']})"
            )
        else:
            print(f"runbook {item['runbook']}: not started: {item['refused']}")


def _diagnose(store, policy, incident_id: str, focus: Focus, provider: ProviderName, rules: Path, actor: str, knowledge):  # type: ignore[no-untyped-def]
    """Run the assisted diagnosis; print and exit on the errors a person can act on."""
    from runtime.incidents import IncidentError
    from runtime.triage.assist.model import AssistError
    from runtime.triage.assist.provider import ProviderError, ProviderUnavailable
    from runtime.triage.assist.service import assist, resume_command

    try:
        return assist(
            store,
            policy,
            incident_id,
            focus.value,
            _provider(provider, rules),
            actor,
            datetime.datetime.now(datetime.UTC),
            knowledge=knowledge,
            similar=similar_incidents,
        )
    except ProviderUnavailable as error:
        _fail(str(error), EXIT_USAGE)
    except ProviderError as error:
        if error.session_id:
            resume = resume_command(["claude", "-r", error.session_id], None)
            print(f"irules: the session is kept; resume it with: {resume}", file=sys.stderr)
        _fail(str(error), EXIT_PROBLEMS)
    except (IncidentError, AssistError) as error:
        _fail(str(error), EXIT_PROBLEMS)


def link_session_command(
    incident_id: IncidentOption,
    session: Annotated[str, typer.Option("--session", help="The assistant's session id, such as Claude Code's.")],
    provider: Annotated[
        ProviderName, typer.Option("--provider", help="The assistant the session belongs to.")
    ] = ProviderName.CLAUDE_CODE,
    state: StateOption = None,
    database: DatabaseOption = None,
    actor: ActorOption = None,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """Link an assistant's session to an incident, so that responders find and resume it. Linking it twice changes nothing."""
    from runtime.incidents import IncidentError
    from runtime.triage.assist.service import link_session

    store = _store(state, database)
    try:
        linked = link_session(store, incident_id, provider.value, session, _actor(actor), datetime.datetime.now(datetime.UTC))
    except IncidentError as error:
        _fail(str(error), EXIT_USAGE if error.status == 400 else EXIT_PROBLEMS)
    finally:
        store.close()
    if output is OutputFormat.JSON:
        print(json.dumps(linked, indent=2))
        return
    state_text = "linked" if linked["created"] else "was already linked"
    print(f"{linked['incident']}: {linked['provider']} session {linked['session_id']} {state_text}")
    if linked["resume"]:
        print(f"resume with: {linked['resume']}")


# ---------------------------------------------------------------- output


def format_result(result: Any, store_options: list[str]) -> str:
    """Return the text `irules assist` prints for an `AssistResult`."""
    lines = [f"{result.incident}: assisted diagnosis of the {result.focus}, by {result.provider}"]
    if result.answer.summary:
        lines.append(printable(result.answer.summary))
    lines += ["", "hypotheses:" if result.answer.hypotheses else "hypotheses: none"]
    for number, hypothesis in enumerate(result.answer.hypotheses, start=1):
        lines.append(f"  {number}. {printable(hypothesis.title)} (confidence {hypothesis.confidence:.2f})")
        lines.extend(f"     - {printable(item)}" for item in hypothesis.evidence)
    lines += ["", "recommendations:" if result.decisions else "recommendations: none"]
    for decision in result.decisions:
        lines.extend(_decision_lines(result.incident, decision, store_options))
    if result.answer.citations:
        lines += ["", "citations: " + ", ".join(printable(item) for item in result.answer.citations)]
    if result.unknown_citations:
        lines.append("not in the knowledge base: " + ", ".join(printable(item) for item in result.unknown_citations))
    if result.session_id:
        lines += ["", f"session: {result.session_id} ({result.provider})"]
        resume = result.resume_command()
        if resume:
            lines.append(f"resume with: {resume}")
    usage = _usage_text(result.usage)
    if usage:
        lines += ["", f"usage: {usage}"]
    return "\n".join(lines) + "\n"


def _decision_lines(incident: str, decision: Any, store_options: list[str]) -> list[str]:
    recommendation = decision.recommendation
    params = " ".join(f"{printable(name)}={printable(value)}" for name, value in recommendation.params.items())
    what = f"{recommendation.kind} {printable(recommendation.name)}" + (f" {params}" if params else "")
    lines = [
        f"  {what} (confidence {recommendation.confidence:.2f}): {VERDICTS[decision.verdict]}",
        f"     why: {printable(decision.reason)}",
    ]
    if recommendation.reason:
        lines.append(f"     assistant: {printable(recommendation.reason)}")
    if decision.verdict != "rejected" and recommendation.kind == "runbook":
        command = ["irules", "remediate", "--incident-id", incident, "--runbook-id", recommendation.name, *store_options]
        lines.append(f"     start it with: {shlex.join(command)}")
    return lines


def _usage_text(usage: dict[str, Any]) -> str:
    parts = []
    if "input_tokens" in usage:
        parts.append(f"{usage['input_tokens']} input tokens")
    if "output_tokens" in usage:
        parts.append(f"{usage['output_tokens']} output tokens")
    if usage.get("cost_usd"):
        parts.append(f"${usage['cost_usd']:.4f}")
    return ", ".join(parts)


def printable(text: str) -> str:
    """Return `text` on one line with control and format characters escaped, so it cannot move the cursor or hide text."""
    return "".join(
        f"\\u{ord(char):04x}" if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") else char for char in str(text)
    )


# ---------------------------------------------------------------- options


def similar_incidents(connection: Any, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the ended incidents most like the incident `row`, as `runtime.triage.similar` finds them."""
    from runtime.triage.similar import find_similar

    return [item.to_json() for item in find_similar(connection, row["key"])]


def _provider(name: ProviderName, rules: Path) -> Any:
    if name is ProviderName.LOCAL:
        from runtime.triage.assist.local import LocalProvider

        return LocalProvider()
    if name is ProviderName.ANTHROPIC:
        from runtime.triage.assist.anthropic import AnthropicProvider, AnthropicSettings

        return AnthropicProvider(AnthropicSettings.from_env(os.environ))
    from runtime.triage.assist.claude_code import ClaudeCodeProvider, ClaudeCodeSettings

    folder = rules if rules.is_dir() else rules.parent
    return ClaudeCodeProvider(ClaudeCodeSettings.from_env(os.environ, folder.resolve()))


def _store(state: Path | None, database: str | None):  # type: ignore[no-untyped-def]
    from runtime.store import Store, StoreError, database_url

    if (state is None) == (database is None):
        _fail("pass exactly one of --state DIR or --database URL", EXIT_USAGE)
    try:
        return Store.open(database_url(state, database))
    except StoreError as error:
        _fail(str(error), EXIT_USAGE)


def _store_options(state: Path | None, database: str | None) -> list[str]:
    """Return the store options to repeat in a suggested command. A database URL may hold a password, so it becomes `URL`."""
    return ["--state", str(state)] if state is not None else ["--database", "URL"]


def _actor(given: str | None) -> str:
    import getpass

    return given or getpass.getuser()


def _fail(message: str, status: int) -> NoReturn:
    print(f"irules: {message}", file=sys.stderr)
    raise typer.Exit(status)
