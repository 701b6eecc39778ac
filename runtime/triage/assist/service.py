"""Assisted diagnosis of one incident: context, provider, validation, gate, and the record on the timeline.

`assist` reads the incident's context, retrieves knowledge documents, asks
the provider, checks each recommendation against the rules and gates it, and
writes onto the incident's timeline, in one transaction:

- `assist.requested`: provider, focus, model and a summary of the prompt
  (size, SHA-256, documents), not its text;
- `assist.answer`: the hypotheses, recommendations and citations;
- `assist.decision`: one per recommendation, `rejected`, `offered` for
  approval, or `would_run`;
- `assist.session`: the provider's session id, which also goes into
  `assistant_sessions`.

A provider that fails leaves `assist.failed` on the timeline, with its
session id when it has one, and `assist` raises the error.

Nothing is started here. `AssistResult.to_start()` returns the runs that the
gate lets start without a person, each a runbook of the rules (or a one-step
runbook for a read-only action) with the incident's values.
"""

from __future__ import annotations

import datetime
import logging
import shlex
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from compiler import ir
from runtime.incidents import IncidentError, add_timeline, get_row
from runtime.policy import Policy
from runtime.store import Store
from runtime.store.schema import assistant_sessions
from runtime.triage.assist.context import SimilarIncidents, build_context, query_text, render_prompt
from runtime.triage.assist.gate import may_run_automatically, runbook_for
from runtime.triage.assist.knowledge import KnowledgeBase
from runtime.triage.assist.model import (
    ACTION_RUNBOOK_PREFIX,
    FOCUSES,
    Answer,
    AssistError,
    Recommendation,
    RecommendationRejected,
    action_runbook,
    find_action,
    validate_answer,
)
from runtime.triage.assist.provider import PROVIDERS, SESSION_ID, Provider, ProviderError, Reply, Request

log = logging.getLogger("irules.assist")

REJECTED = "rejected"
OFFERED = "offered"
WOULD_RUN = "would_run"
DOCUMENT_LIMIT = 5


@dataclass(slots=True)
class Decision:
    """The verdict on one recommendation, with its reason. `runbook` is what would start, unless it was rejected."""

    recommendation: Recommendation
    verdict: str
    reason: str
    runbook: ir.Runbook | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.recommendation.model_dump(),
            "verdict": self.verdict,
            "reason": self.reason,
            "runbook": self.runbook.id if self.runbook is not None else None,
        }


@dataclass(slots=True)
class AssistResult:
    """The outcome of one assisted diagnosis."""

    incident: str
    incident_id: int
    focus: str
    provider: str
    answer: Answer
    decisions: list[Decision]
    values: dict[str, Any]
    model: str | None = None
    session_id: str | None = None
    resume: list[str] | None = None
    workdir: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    prompt: dict[str, Any] = field(default_factory=dict)
    unknown_citations: list[str] = field(default_factory=list)

    def to_start(self) -> list[ir.Runbook]:
        """Return the runbooks the gate lets start without a person, in the order of the answer."""
        return [decision.runbook for decision in self.decisions if decision.verdict == WOULD_RUN and decision.runbook]

    def resume_command(self) -> str | None:
        """Return the shell command that resumes the provider's session in its folder, or None without a session."""
        return resume_command(self.resume, self.workdir)

    def to_json(self) -> dict[str, Any]:
        return {
            "incident": self.incident,
            "focus": self.focus,
            "provider": self.provider,
            "model": self.model,
            "summary": self.answer.summary,
            "hypotheses": [item.model_dump() for item in self.answer.hypotheses],
            "recommendations": [decision.to_json() for decision in self.decisions],
            "citations": list(self.answer.citations),
            "unknown_citations": list(self.unknown_citations),
            "session_id": self.session_id,
            "resume": self.resume_command(),
            "usage": dict(self.usage),
            "prompt": dict(self.prompt),
        }


def assist(
    store: Store,
    policy: Policy,
    incident_ref: str,
    focus: str,
    provider: Provider,
    actor: str,
    now: datetime.datetime,
    *,
    knowledge: KnowledgeBase | None = None,
    similar: SimilarIncidents | None = None,
) -> AssistResult:
    """Diagnose the incident `incident_ref` with `provider`, record everything on its timeline, and return the result.

    Example:
        result = assist(store, policy, "INC-2026-0042", "root-cause", LocalProvider(), "alice", now)
        for runbook in result.to_start():
            start_run(store, runbook, incident_id=result.incident_id, values=result.values, ...)

    Raises:
        IncidentError: no incident has that key or number.
        AssistError: `focus` is unknown, the prompt cannot be built, or the
            provider failed (a `ProviderError`, recorded on the timeline).
    """
    if focus not in FOCUSES:
        raise AssistError(f"unknown focus {focus!r}; use one of {', '.join(FOCUSES)}")
    with store.read() as connection:
        context = build_context(connection, policy, incident_ref, now=now, similar=similar)
    hits = knowledge.search(query_text(context, focus), limit=DOCUMENT_LIMIT) if knowledge is not None else []
    prompt = render_prompt(context, focus, hits)
    requested = {"provider": provider.name, "focus": focus, "prompt": prompt.summary()}
    try:
        reply = provider.diagnose(Request(focus=focus, context=context, prompt=prompt, documents=hits))
    except ProviderError as error:
        _record_failure(store, context.incident_id, provider.name, focus, requested, error, actor, now)
        raise

    validation = validate_answer(reply.answer, policy.ruleset, context.values)
    decisions = [Decision(item.recommendation, REJECTED, item.reason) for item in validation.rejected]
    for checked in validation.accepted:
        recommendation = checked.recommendation
        allowed, reason = may_run_automatically(recommendation, policy.ruleset, context.values)
        runbook = runbook_for(recommendation, policy.ruleset, context.values)
        decisions.append(Decision(recommendation, WOULD_RUN if allowed else OFFERED, reason, runbook))
    order = {id(item): index for index, item in enumerate(reply.answer.recommendations)}
    decisions.sort(key=lambda decision: order.get(id(decision.recommendation), len(order)))

    known = {hit.document.id for hit in hits} | {f"runbook:{runbook.id}" for runbook in policy.ruleset.runbooks}
    if knowledge is not None:
        known |= {document.id for document in knowledge.documents}
    result = AssistResult(
        incident=context.key,
        incident_id=context.incident_id,
        focus=focus,
        provider=provider.name,
        answer=reply.answer,
        decisions=decisions,
        values=context.values,
        model=reply.model,
        session_id=reply.session_id,
        resume=reply.resume,
        workdir=reply.workdir,
        usage=dict(reply.usage),
        prompt=prompt.summary(),
        unknown_citations=[item for item in reply.answer.citations if item not in known],
    )
    with store.write() as connection:
        _record(connection, result, reply, requested, actor, now)
    log.info(
        "assisted diagnosis of %s with %s: %d hypotheses, %d recommendations, %d would run",
        result.incident,
        provider.name,
        len(reply.answer.hypotheses),
        len(decisions),
        len(result.to_start()),
    )
    return result


def _record(
    connection: sa.Connection, result: AssistResult, reply: Reply, requested: dict[str, Any], actor: str, now: datetime.datetime
) -> None:
    incident_id = result.incident_id
    add_timeline(
        connection,
        incident_id,
        now,
        "assist.requested",
        actor,
        f"Assisted diagnosis ({result.focus}) requested from {result.provider}",
        {**requested, "model": reply.model},
    )
    answer = reply.answer
    add_timeline(
        connection,
        incident_id,
        now,
        "assist.answer",
        result.provider,
        f"{result.provider} answered with {_count(len(answer.hypotheses), 'hypothesis', 'hypotheses')} and "
        f"{_count(len(answer.recommendations), 'recommendation', 'recommendations')}"
        + (f": {answer.summary[:300]}" if answer.summary else ""),
        {
            "hypotheses": [item.model_dump() for item in answer.hypotheses],
            "recommendations": [item.model_dump() for item in answer.recommendations],
            "citations": list(answer.citations),
            "unknown_citations": list(result.unknown_citations),
            "usage": dict(reply.usage),
        },
    )
    for decision in result.decisions:
        recommendation = decision.recommendation
        what = f"{recommendation.kind} {recommendation.name[:100]}"
        verb = {REJECTED: "rejected", OFFERED: "offered for approval", WOULD_RUN: "would run automatically"}[decision.verdict]
        add_timeline(
            connection,
            incident_id,
            now,
            "assist.decision",
            "irules",
            f"Recommended {what} {verb}: {decision.reason}",
            decision.to_json(),
        )
    if result.session_id:
        _store_session(
            connection, incident_id, result.provider, result.session_id, result.focus, actor, now, result.resume_command()
        )


def _record_failure(
    store: Store,
    incident_id: int,
    provider: str,
    focus: str,
    requested: dict[str, Any],
    error: ProviderError,
    actor: str,
    now: datetime.datetime,
) -> None:
    with store.write() as connection:
        add_timeline(
            connection,
            incident_id,
            now,
            "assist.failed",
            actor,
            f"Assisted diagnosis ({focus}) by {provider} failed: {error}",
            {**requested, "error": type(error).__name__, "session_id": error.session_id},
        )
        if error.session_id and SESSION_ID.fullmatch(error.session_id):
            _store_session(connection, incident_id, provider, error.session_id, focus, actor, now, None)
    log.warning("assisted diagnosis of incident %d with %s failed: %s", incident_id, provider, error)


# ---------------------------------------------------------------- sessions


def link_session(
    store: Store, incident_ref: str, provider: str, session_id: str, actor: str, now: datetime.datetime
) -> dict[str, Any]:
    """Link an assistant's session to an incident, as `irules update --session` does. Linking it twice changes nothing.

    Returns the incident's key, the provider, the session id, whether the link
    is new (`created`) and, for Claude Code, the command that resumes it.

    Raises:
        IncidentError: the incident is unknown (404), or the provider or the
            session id is invalid (400).
    """
    if provider not in PROVIDERS:
        raise IncidentError(f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}", status=400)
    if not SESSION_ID.fullmatch(session_id):
        raise IncidentError(
            f"invalid session id {session_id[:80]!r}: use letters, digits, `.`, `_`, `:` and `-`, at most 200", status=400
        )
    resume = resume_command(["claude", "-r", session_id], None) if provider == "claude-code" else None
    with store.write() as connection:
        row = get_row(connection, incident_ref)
        created = _store_session(connection, row["id"], provider, session_id, None, actor, now, resume)
    return {"incident": row["key"], "provider": provider, "session_id": session_id, "created": created, "resume": resume}


def sessions(store: Store, incident_ref: str) -> list[dict[str, Any]]:
    """Return the assistant sessions linked to an incident, oldest first."""
    with store.read() as connection:
        row = get_row(connection, incident_ref)
        rows = connection.execute(
            sa.select(assistant_sessions).where(assistant_sessions.c.incident_id == row["id"]).order_by(assistant_sessions.c.id)
        ).mappings()
        return [
            {
                "provider": item["provider"],
                "session_id": item["session_id"],
                "focus": item["focus"],
                "linked_by": item["linked_by"],
                "created_at": item["created_at"],
            }
            for item in rows
        ]


def _store_session(
    connection: sa.Connection,
    incident_id: int,
    provider: str,
    session_id: str,
    focus: str | None,
    actor: str,
    now: datetime.datetime,
    resume: str | None,
) -> bool:
    """Insert the session unless it is linked already, note it on the timeline, and return whether it was new."""
    existing = connection.execute(
        sa.select(assistant_sessions.c.id).where(
            assistant_sessions.c.incident_id == incident_id,
            assistant_sessions.c.provider == provider,
            assistant_sessions.c.session_id == session_id,
        )
    ).scalar()
    if existing is not None:
        return False
    connection.execute(
        assistant_sessions.insert().values(
            incident_id=incident_id,
            provider=provider,
            session_id=session_id,
            focus=focus,
            linked_by=actor,
            created_at=now,
        )
    )
    add_timeline(
        connection,
        incident_id,
        now,
        "assist.session",
        actor,
        f"{provider} session {session_id} linked" + (f"; resume with: {resume}" if resume else ""),
        {"provider": provider, "session_id": session_id, "focus": focus, "resume": resume},
    )
    return True


def resume_command(resume: list[str] | None, workdir: str | None) -> str | None:
    """Return `resume` as a shell command, run in `workdir` when one is given."""
    if not resume:
        return None
    command = shlex.join(resume)
    return f"cd {shlex.quote(workdir)} && {command}" if workdir else command


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def start_recommended(store: Store, result: AssistResult, actor: str, now: datetime.datetime) -> list[dict[str, Any]]:
    """Start the runs that the gate lets start without a person; return, per runbook, the new run or why not.

    A recommended action runs as its one-step runbook (`model.action_runbook`). Its
    checked arguments go into the run's values under `assist_action`, so that the
    executor can rebuild the same runbook when it resumes the run.
    """
    from runtime.runbooks.runs import RunRefused, start_run

    results: list[dict[str, Any]] = []
    for runbook in result.to_start():
        values = dict(result.values)
        if runbook.id.startswith(ACTION_RUNBOOK_PREFIX):
            step = runbook.steps[0]
            values["assist_action"] = {"action": step.action, "params": {item["name"]: item["value"] for item in step.args}}
        try:
            run_id = start_run(
                store, runbook, incident_id=result.incident_id, values=values, trigger="assist", requested_by=actor, now=now
            )
        except RunRefused as refused:
            log.info(
                "incident %s: runbook %s recommended by %s not started: %s", result.incident, runbook.id, result.provider, refused
            )
            results.append({"runbook": runbook.id, "refused": str(refused)})
            continue
        results.append({"runbook": runbook.id, "run": run_id})
    return results


def rebuild_action_runbook(ruleset: ir.Ruleset, runbook_id: str, values: dict[str, Any]) -> ir.Runbook | None:
    """Return the one-step runbook of a recommended action stored with a run, or None when the run is not one."""
    stored = values.get("assist_action")
    if not runbook_id.startswith(ACTION_RUNBOOK_PREFIX) or not isinstance(stored, dict):
        return None
    try:
        action = find_action(ruleset, str(stored.get("action")))
    except RecommendationRejected:
        return None
    params = {str(name): str(value) for name, value in (stored.get("params") or {}).items()}
    return action_runbook(action, params)
