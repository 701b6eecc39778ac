"""The records a simulation produces: incidents, pages, escalation steps, runbook runs and the outcome of people's actions.

Every value is a frozen dataclass. Incidents are listed in the order they
opened, and every other list is sorted by its fields in the order declared, so
two runs of the same simulation give equal results.
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass
from typing import Any

# Senders of a page: the daemon from its outbox, or Alertmanager itself for the
# channels that the generated alertmanager.yml delivers.
IRULES = "irules"
ALERTMANAGER = "alertmanager"


@dataclass(frozen=True, slots=True)
class SimulatedIncident:
    """An incident as the simulation left it.

    `events` are the numbers of the firing alert events that joined it, counted
    from 0 in the order they were given to the simulation. `fingerprints` are
    the alert fingerprints of those events.
    """

    key: str
    title: str
    status: str
    severity: str | None
    team: str | None
    receivers: tuple[str, ...]
    fingerprints: tuple[str, ...]
    events: tuple[int, ...]
    created_at: datetime.datetime
    acknowledged_at: datetime.datetime | None
    acknowledged_by: str | None
    resolved_at: datetime.datetime | None
    escalation_level: int

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "status": self.status,
            "severity": self.severity,
            "team": self.team,
            "receivers": list(self.receivers),
            "fingerprints": list(self.fingerprints),
            "events": list(self.events),
            "created_at": iso(self.created_at),
            "acknowledged_at": iso(self.acknowledged_at),
            "acknowledged_by": self.acknowledged_by,
            "resolved_at": iso(self.resolved_at),
            "escalation_level": self.escalation_level,
        }


@dataclass(frozen=True, slots=True)
class Page:
    """One message on one channel of a receiver, at the virtual time it would be sent.

    `event` is the planner's: opened, updated, acknowledged, reminder, resolved or
    escalated. `sender` is `irules` for a row of the daemon's outbox and
    `alertmanager` for a channel that Alertmanager delivers itself.
    """

    at: datetime.datetime
    incident: str
    receiver: str
    channel: str
    event: str
    sender: str

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "incident": self.incident,
            "receiver": self.receiver,
            "channel": self.channel,
            "event": self.event,
            "sender": self.sender,
        }


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """An escalation step that fired: `level` is the incident's level after it, `target` the receiver it paged or notified."""

    at: datetime.datetime
    incident: str
    level: int
    action: str
    target: str | None

    def to_json(self) -> dict[str, Any]:
        return {"at": iso(self.at), "incident": self.incident, "level": self.level, "action": self.action, "target": self.target}


@dataclass(frozen=True, slots=True)
class RunbookRun:
    """A runbook the pipeline started (or rejected, with `status` `refused`) for an incident; nothing of it was executed.

    `path` lists the steps the dry-run planner expects to run, in order: every step
    whose condition does not evaluate to false on the alert, apart from failure-path
    steps. `undecided` names the steps of `path` whose condition reads the output
    of earlier steps, so only a real run decides them. `detail` contains the reason
    of a refusal or of a step whose parameters the action rejects.
    """

    at: datetime.datetime
    incident: str
    runbook: str
    status: str
    path: tuple[str, ...] = ()
    undecided: tuple[str, ...] = ()
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "incident": self.incident,
            "runbook": self.runbook,
            "status": self.status,
            "path": list(self.path),
            "undecided": list(self.undecided),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """The outcome of an acknowledgement or resolution by a person; `incident` is None when no incident contained the alerts."""

    at: datetime.datetime
    action: str
    by: str
    incident: str | None
    outcome: str

    def to_json(self) -> dict[str, Any]:
        return {"at": iso(self.at), "action": self.action, "by": self.by, "incident": self.incident, "outcome": self.outcome}


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Everything a simulation produced from `start` up to `end`, its virtual time when the result was taken."""

    start: datetime.datetime
    end: datetime.datetime
    incidents: tuple[SimulatedIncident, ...]
    pages: tuple[Page, ...]
    escalations: tuple[EscalationStep, ...]
    runbooks: tuple[RunbookRun, ...]
    actions: tuple[ActionOutcome, ...]

    def incident(self, key: str) -> SimulatedIncident:
        """Return the incident with this key; raise `KeyError` when there is none."""
        for incident in self.incidents:
            if incident.key == key:
                return incident
        raise KeyError(key)

    def incident_of(self, fingerprint: str) -> tuple[SimulatedIncident, ...]:
        """Return the incidents that an alert with this fingerprint joined, oldest first."""
        return tuple(incident for incident in self.incidents if fingerprint in incident.fingerprints)

    def pages_by_receiver(self) -> dict[str, int]:
        """Return the number of pages per receiver, sorted by receiver."""
        return dict(sorted(Counter(page.receiver for page in self.pages).items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "incidents": [incident.to_json() for incident in self.incidents],
            "pages": [page.to_json() for page in self.pages],
            "escalations": [step.to_json() for step in self.escalations],
            "runbooks": [run.to_json() for run in self.runbooks],
            "actions": [action.to_json() for action in self.actions],
        }


def iso(moment: datetime.datetime | None) -> str | None:
    """Return an aware time as ISO 8601 in UTC with a `Z`, or None."""
    return None if moment is None else moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
