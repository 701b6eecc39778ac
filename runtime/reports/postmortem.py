"""Post-mortems built from what the store recorded about an incident.

`collect` reads the incident's row, alerts, timeline, runbook runs with their
steps and approvals, outbox rows and assistant sessions into a `PostMortem`,
which contains data only and no wording. `render` (in `postmortem_render`) turns
it into Markdown or HTML through Jinja2 templates, in English or German.

Example:
    post_mortem = collect(store, "INC-2026-0042")
    text = render(post_mortem, locale="de", output_format="md")

Root causes and contributing factors each name their source:

- `impact`: the likely cause that the impact analysis ranked first from the
  service graph (`incidents.impact`); the other ranked causes that alert are
  contributing factors.
- `assist`: an assisted diagnosis on the timeline (`assist.answer`). Of an
  answer about the root cause, the most confident hypothesis is a root cause
  and the others are contributing factors; hypotheses of answers about the
  impact or the remediation are contributing factors.
- `responder`: the note a person gave when resolving or closing the incident.

Similar past incidents come from `incidents.triage`, where notifications keep
them, and the classifier's verdict on the severity comes from there too.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runtime.incidents import ENDED, get_row
from runtime.reports.postmortem_render import render
from runtime.reports.timings import Timings, first_alert_starts, timings_of
from runtime.store import Store
from runtime.store.schema import alerts, approvals, assistant_sessions, outbox, runbook_runs, step_runs, timeline

__all__ = ["PostMortem", "collect", "render"]

# Label values longer than this are cut in the alerts table, so one huge label cannot swamp the document.
LABEL_VALUE_CHARS = 200


@dataclass(frozen=True, slots=True)
class Incident:
    """The incident's own fields, as the summary shows them."""

    key: str
    title: str
    status: str
    severity: str | None
    team: str | None
    services: tuple[str, ...]
    assignee: str | None
    acknowledged_by: str | None
    created_at: datetime.datetime
    resolved_at: datetime.datetime | None
    closed_at: datetime.datetime | None


@dataclass(frozen=True, slots=True)
class AffectedService:
    """A service in the blast radius: `distance` hops from the nearest alerting service."""

    service: str
    distance: int
    tier: int | None
    alerting: bool
    user_facing: bool
    via: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Impact:
    """The impact analysis stored with the incident: scores from 0 to 100, the blast radius and the likely cause."""

    impact: int
    urgency: int
    likely_cause: str | None
    affected: tuple[AffectedService, ...]
    user_facing: tuple[str, ...]
    method: str
    classifier_level: str | None
    classifier_confidence: float | None
    classifier_review: bool


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One timeline entry."""

    at: datetime.datetime
    kind: str
    actor: str
    message: str


@dataclass(frozen=True, slots=True)
class AlertEntry:
    """One deduplicated alert of the incident.

    `labels` leaves out `alertname`, which is `name`, and labels starting with
    `__`; values are cut at `LABEL_VALUE_CHARS`. `starts_at` is the sender's
    start, or when irules first saw the alert; `ends_at` is when it resolved.
    """

    name: str
    status: str
    severity: str | None
    source: str
    labels: tuple[tuple[str, str], ...]
    summary: str | None
    starts_at: datetime.datetime
    ends_at: datetime.datetime | None
    occurrences: int
    flapping: bool


@dataclass(frozen=True, slots=True)
class Approval:
    """An approval request, or a decision on an interrupted step, and who decided it when."""

    kind: str
    status: str
    team: str | None
    requested_at: datetime.datetime
    decided_by: str | None
    decided_at: datetime.datetime | None
    note: str | None


@dataclass(frozen=True, slots=True)
class StepEntry:
    """One step of a run: its last state, the operation it performed and the approvals it needed."""

    name: str
    state: str
    attempt: int
    operation: str
    detail: str | None
    updated_at: datetime.datetime
    approvals: tuple[Approval, ...]


@dataclass(frozen=True, slots=True)
class RunEntry:
    """One runbook run on the incident, with its steps in the order they first recorded a state."""

    id: int
    runbook: str
    status: str
    trigger: str
    requested_by: str
    created_at: datetime.datetime
    finished_at: datetime.datetime | None
    detail: str | None
    steps: tuple[StepEntry, ...]


@dataclass(frozen=True, slots=True)
class Notification:
    """One outbox row: a message to a receiver on a channel. The endpoint is left out because it may carry a secret."""

    created_at: datetime.datetime
    channel: str
    receiver: str | None
    event: str
    status: str
    attempts: int
    sent_at: datetime.datetime | None


@dataclass(frozen=True, slots=True)
class Finding:
    """A root cause or contributing factor, with where it came from.

    `source` is `impact`, `assist` or `responder`. `by` is the assistant's
    provider or the person, `focus` the assisted diagnosis' focus, `explains`
    the alerting services an impact cause explains.
    """

    text: str
    source: str
    confidence: float | None = None
    evidence: tuple[str, ...] = ()
    explains: tuple[str, ...] = ()
    at: datetime.datetime | None = None
    by: str | None = None
    focus: str | None = None


@dataclass(frozen=True, slots=True)
class SimilarIncident:
    """A past incident like this one, as the triage found it when the incident was notified."""

    id: str
    title: str
    score: float | None
    resolved_by: str | None
    resolution: str | None
    resolved_at: datetime.datetime | None


@dataclass(frozen=True, slots=True)
class Session:
    """An assistant's session linked to the incident, which responders can resume."""

    provider: str
    session_id: str
    focus: str | None
    linked_by: str
    created_at: datetime.datetime


@dataclass(frozen=True, slots=True)
class PostMortem:
    """Everything a post-mortem shows about one incident, read from the store, without wording."""

    incident: Incident
    timings: Timings
    impact: Impact | None
    timeline: tuple[TimelineEvent, ...]
    alerts: tuple[AlertEntry, ...]
    runs: tuple[RunEntry, ...]
    notifications: tuple[Notification, ...]
    root_causes: tuple[Finding, ...]
    contributing_factors: tuple[Finding, ...]
    similar: tuple[SimilarIncident, ...]
    sessions: tuple[Session, ...]


def collect(store: Store, reference: str) -> PostMortem:
    """Read everything about the incident `reference` (its key or number) in one read transaction.

    Raises:
        IncidentError: no incident has that key or number (status 404).
    """
    with store.read() as connection:
        row = get_row(connection, reference)
        incident_id = row["id"]
        first_alert_at = first_alert_starts(connection, [incident_id]).get(incident_id)
        entries = _timeline(connection, incident_id)
        root_causes, contributing = _findings(row, entries)
        return PostMortem(
            incident=_incident(row),
            timings=timings_of(row, first_alert_at),
            impact=_impact(row["impact"], row["triage"]),
            timeline=tuple(TimelineEvent(entry["at"], entry["kind"], entry["actor"], entry["message"]) for entry in entries),
            alerts=_alerts(connection, incident_id),
            runs=_runs(connection, incident_id),
            notifications=_notifications(connection, incident_id),
            root_causes=root_causes,
            contributing_factors=contributing,
            similar=_similar(row["triage"]),
            sessions=_sessions(connection, incident_id),
        )


# ---------------------------------------------------------------- the incident and its impact


def _incident(row: Mapping[str, Any]) -> Incident:
    return Incident(
        key=row["key"],
        title=row["title"],
        status=row["status"],
        severity=row["severity"],
        team=row["team"],
        services=tuple(row["services"] or ()),
        assignee=row["assignee"],
        acknowledged_by=row["acknowledged_by"],
        created_at=row["created_at"],
        resolved_at=row["resolved_at"],
        closed_at=row["closed_at"],
    )


def _impact(data: Mapping[str, Any] | None, triage: Mapping[str, Any] | None) -> Impact | None:
    if not data:
        return None
    user_facing = tuple(data.get("user_facing") or ())
    causes = data.get("causes") or []
    verdict = (triage or {}).get("classifier") or {}
    return Impact(
        impact=int(data.get("impact") or 0),
        urgency=int(data.get("urgency") or 0),
        likely_cause=causes[0]["service"] if causes else None,
        affected=tuple(
            AffectedService(
                service=item["service"],
                distance=int(item.get("distance") or 0),
                tier=item.get("tier"),
                alerting=bool(item.get("alerting")),
                user_facing=item["service"] in user_facing,
                via=tuple(item.get("via") or ()),
            )
            for item in data.get("affected") or []
        ),
        user_facing=user_facing,
        method=str(data.get("method") or ""),
        classifier_level=verdict.get("level"),
        classifier_confidence=verdict.get("confidence"),
        classifier_review=bool((triage or {}).get("review")),
    )


# ---------------------------------------------------------------- timeline and alerts


def _timeline(connection: sa.Connection, incident_id: int) -> list[dict[str, Any]]:
    query = sa.select(timeline).where(timeline.c.incident_id == incident_id).order_by(timeline.c.id)
    return [dict(entry) for entry in connection.execute(query).mappings()]


def _alerts(connection: sa.Connection, incident_id: int) -> tuple[AlertEntry, ...]:
    query = sa.select(alerts).where(alerts.c.incident_id == incident_id).order_by(alerts.c.first_seen, alerts.c.key)
    return tuple(_alert(row) for row in connection.execute(query).mappings())


def _alert(row: Mapping[str, Any]) -> AlertEntry:
    labels = tuple(
        (name, _cut(str(value), LABEL_VALUE_CHARS))
        for name, value in sorted((row["labels"] or {}).items())
        if name != "alertname" and not name.startswith("__")
    )
    annotations = row["annotations"] or {}
    summary = annotations.get("summary") or annotations.get("description")
    return AlertEntry(
        name=row["name"],
        status=row["status"],
        severity=row["severity"],
        source=row["source"],
        labels=labels,
        summary=_cut(str(summary), LABEL_VALUE_CHARS * 5) if summary else None,
        starts_at=row["starts_at"] or row["first_seen"],
        # The end the sender reported (endsAt, resolvedDateTime), as the start is the one it reported.
        ends_at=(row["ends_at"] or row["resolved_at"]) if row["status"] == "resolved" else None,
        occurrences=row["occurrences"],
        flapping=bool(row["flapping"]),
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- runs, steps, approvals


def _runs(connection: sa.Connection, incident_id: int) -> tuple[RunEntry, ...]:
    from runtime.runbooks.operations import operation_text

    runs = connection.execute(
        sa.select(runbook_runs).where(runbook_runs.c.incident_id == incident_id).order_by(runbook_runs.c.id)
    ).mappings()
    runs = [dict(run) for run in runs]
    run_ids = [run["id"] for run in runs]
    steps = connection.execute(sa.select(step_runs).where(step_runs.c.run_id.in_(run_ids)).order_by(step_runs.c.id)).mappings()
    asks = connection.execute(sa.select(approvals).where(approvals.c.run_id.in_(run_ids)).order_by(approvals.c.id)).mappings()

    answers: dict[tuple[int, str], list[Approval]] = {}
    for ask in asks:
        answers.setdefault((ask["run_id"], ask["step"]), []).append(
            Approval(
                kind=ask["kind"],
                status=ask["status"],
                team=ask["team"],
                requested_at=ask["requested_at"],
                decided_by=ask["decided_by"],
                decided_at=ask["decided_at"],
                note=ask["note"],
            )
        )
    by_run: dict[int, list[StepEntry]] = {run_id: [] for run_id in run_ids}
    for step in steps:
        by_run[step["run_id"]].append(
            StepEntry(
                name=step["name"],
                state=step["state"],
                attempt=step["attempt"],
                operation=operation_text(step["operation"]) if step["operation"] else "",
                detail=step["detail"],
                updated_at=step["updated_at"],
                approvals=tuple(answers.get((step["run_id"], step["name"]), ())),
            )
        )
    return tuple(
        RunEntry(
            id=run["id"],
            runbook=run["runbook_id"],
            status=run["status"],
            trigger=run["trigger"],
            requested_by=run["requested_by"],
            created_at=run["created_at"],
            finished_at=run["finished_at"],
            detail=run["detail"],
            steps=tuple(by_run[run["id"]]),
        )
        for run in runs
    )


# ---------------------------------------------------------------- communication


def _notifications(connection: sa.Connection, incident_id: int) -> tuple[Notification, ...]:
    query = sa.select(outbox).where(outbox.c.incident_id == incident_id).order_by(outbox.c.id)
    return tuple(
        Notification(
            created_at=row["created_at"],
            channel=row["channel"],
            receiver=row["receiver"],
            event=row["event"],
            status=row["status"],
            attempts=row["attempts"],
            sent_at=row["sent_at"],
        )
        for row in connection.execute(query).mappings()
    )


# ---------------------------------------------------------------- root cause


def _findings(row: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> tuple[tuple[Finding, ...], tuple[Finding, ...]]:
    """Return the root causes and the contributing factors, each marked with its source."""
    root_causes: list[Finding] = []
    contributing: list[Finding] = []

    causes = (row["impact"] or {}).get("causes") or []
    for index, cause in enumerate(causes):
        finding = Finding(text=cause["service"], source="impact", explains=tuple(cause.get("explains") or ()))
        if index == 0:
            root_causes.append(finding)
        elif cause.get("alerting"):
            contributing.append(finding)

    for answer in _assist_answers(entries):
        hypotheses = sorted(answer["hypotheses"], key=lambda item: -float(item.get("confidence") or 0))
        for index, hypothesis in enumerate(hypotheses):
            finding = Finding(
                text=str(hypothesis.get("title") or ""),
                source="assist",
                confidence=hypothesis.get("confidence"),
                evidence=tuple(str(item) for item in hypothesis.get("evidence") or ()),
                at=answer["at"],
                by=answer["provider"],
                focus=answer["focus"],
            )
            (root_causes if index == 0 and answer["focus"] == "root-cause" else contributing).append(finding)

    for entry in entries:
        note = _resolution_note(entry)
        if note:
            root_causes.append(Finding(text=note, source="responder", at=entry["at"], by=entry["actor"]))
    return tuple(root_causes), tuple(contributing)


def _assist_answers(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return each `assist.answer` with the focus of the `assist.requested` entry written just before it."""
    found = []
    focus = None
    for entry in entries:
        data = entry["data"] or {}
        if entry["kind"] == "assist.requested":
            focus = data.get("focus")
        elif entry["kind"] == "assist.answer":
            found.append(
                {"at": entry["at"], "provider": entry["actor"], "focus": focus, "hypotheses": data.get("hypotheses") or []}
            )
    return found


def _resolution_note(entry: Mapping[str, Any]) -> str | None:
    """Return the note a person gave when resolving or closing the incident, or None.

    `runtime.incidents.update` keeps that note only in the entry's message:
    `Status changed from A to B: NOTE`, followed by ` (N of its alerts still
    firing)` when alerts still fired.
    """
    data = entry["data"] or {}
    if entry["kind"] != "incident.status" or data.get("to") not in ENDED:
        return None
    prefix = f"Status changed from {data.get('from')} to {data.get('to')}: "
    if not entry["message"].startswith(prefix):
        return None
    note = entry["message"].removeprefix(prefix)
    if data.get("firing"):
        note = note.removesuffix(f" ({data['firing']} of its alerts still firing)")
    return note.strip() or None


def _similar(triage: Mapping[str, Any] | None) -> tuple[SimilarIncident, ...]:
    return tuple(
        SimilarIncident(
            id=str(item.get("id") or ""),
            title=str(item.get("title") or ""),
            score=item.get("score"),
            resolved_by=item.get("resolved_by"),
            resolution=item.get("resolution"),
            resolved_at=_parse_time(item.get("resolved_at")),
        )
        for item in (triage or {}).get("similar") or []
    )


def _parse_time(text: str | None) -> datetime.datetime | None:
    """Return ISO 8601 text, as the triage keeps times, as an aware UTC datetime; None for anything else."""
    try:
        moment = datetime.datetime.fromisoformat(text) if text else None
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    return moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment.astimezone(datetime.UTC)


def _sessions(connection: sa.Connection, incident_id: int) -> tuple[Session, ...]:
    query = sa.select(assistant_sessions).where(assistant_sessions.c.incident_id == incident_id).order_by(assistant_sessions.c.id)
    return tuple(
        Session(
            provider=row["provider"],
            session_id=row["session_id"],
            focus=row["focus"],
            linked_by=row["linked_by"],
            created_at=row["created_at"],
        )
        for row in connection.execute(query).mappings()
    )
