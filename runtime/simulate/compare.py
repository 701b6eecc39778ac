"""The differences between two simulations of the same inputs: a baseline and a candidate rule version.

Incidents are compared as partitions of the firing alert events. Both
simulations received the same events, numbered alike, so each event lies in
one incident of each. A candidate incident whose events come from several
baseline incidents merged them; a baseline incident whose events went to
several candidate incidents was split. Incidents with the same events in both
are matched, and a matched pair whose receivers, severity, team, pages,
escalation level or runbooks differ is listed as changed.
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass
from typing import Any

from runtime.simulate.result import SimulatedIncident, SimulationResult, iso


@dataclass(frozen=True, slots=True)
class Count:
    """One figure in the baseline and in the candidate."""

    baseline: int
    candidate: int

    @property
    def difference(self) -> int:
        return self.candidate - self.baseline

    def to_json(self) -> dict[str, int]:
        return {"baseline": self.baseline, "candidate": self.candidate, "difference": self.difference}


@dataclass(frozen=True, slots=True)
class Regrouping:
    """Incidents that the two versions group differently: the `baseline` and the `candidate` incidents that share alert events."""

    at: datetime.datetime
    baseline: tuple[str, ...]
    candidate: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"at": iso(self.at), "baseline": list(self.baseline), "candidate": list(self.candidate)}


@dataclass(frozen=True, slots=True)
class IncidentDifference:
    """One concrete incident that the versions treat differently: merged, split or changed, with what changed."""

    kind: str
    at: datetime.datetime
    title: str
    baseline: tuple[str, ...]
    candidate: tuple[str, ...]
    changes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at": iso(self.at),
            "title": self.title,
            "baseline": list(self.baseline),
            "candidate": list(self.candidate),
            "changes": list(self.changes),
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """Every computed difference between a baseline and a candidate simulation."""

    incidents: Count
    merged: tuple[Regrouping, ...]
    split: tuple[Regrouping, ...]
    pages: dict[str, Count]
    escalation_steps: Count
    escalation_levels: dict[int, Count]
    runbooks: dict[str, Count]
    refused_runbooks: dict[str, Count]
    differences: tuple[IncidentDifference, ...]

    @property
    def merged_baseline_incidents(self) -> int:
        """Return how many baseline incidents the candidate merged into others."""
        return sum(len(group.baseline) for group in self.merged)

    def to_json(self) -> dict[str, Any]:
        return {
            "incidents": self.incidents.to_json(),
            "merged": [group.to_json() for group in self.merged],
            "split": [group.to_json() for group in self.split],
            "pages": {receiver: count.to_json() for receiver, count in self.pages.items()},
            "escalations": {
                "steps": self.escalation_steps.to_json(),
                "levels": {str(level): count.to_json() for level, count in self.escalation_levels.items()},
            },
            "runbooks": {runbook: count.to_json() for runbook, count in self.runbooks.items()},
            "refused_runbooks": {runbook: count.to_json() for runbook, count in self.refused_runbooks.items()},
            "differences": [difference.to_json() for difference in self.differences],
        }


def compare(baseline: SimulationResult, candidate: SimulationResult) -> Comparison:
    """Return the differences of `candidate` from `baseline`, two simulations of the same inputs."""
    merged = _regroupings(candidate.incidents, _owner(baseline.incidents), into_baseline=False)
    split = _regroupings(baseline.incidents, _owner(candidate.incidents), into_baseline=True)
    differences = [
        *(_regrouping_difference("merged", group, baseline, candidate) for group in merged),
        *(_regrouping_difference("split", group, baseline, candidate) for group in split),
        *_changed(baseline, candidate),
    ]
    return Comparison(
        incidents=Count(len(baseline.incidents), len(candidate.incidents)),
        merged=tuple(merged),
        split=tuple(split),
        pages=_counts(baseline.pages_by_receiver(), candidate.pages_by_receiver()),
        escalation_steps=Count(len(baseline.escalations), len(candidate.escalations)),
        escalation_levels=_levels(baseline, candidate),
        runbooks=_counts(_runbooks(baseline, "started"), _runbooks(candidate, "started")),
        refused_runbooks=_counts(_runbooks(baseline, "refused"), _runbooks(candidate, "refused")),
        differences=tuple(sorted(differences, key=lambda item: (item.at, item.kind, item.baseline, item.candidate))),
    )


def _owner(incidents: tuple[SimulatedIncident, ...]) -> dict[int, str]:
    """Return the key of the incident that contains each event number."""
    return {number: incident.key for incident in incidents for number in incident.events}


def _regroupings(incidents: tuple[SimulatedIncident, ...], other: dict[int, str], *, into_baseline: bool) -> list[Regrouping]:
    """Return the incidents whose events lie in several incidents of the other version."""
    found = []
    for incident in incidents:
        keys = tuple(sorted({other[number] for number in incident.events if number in other}))
        if len(keys) < 2:
            continue
        if into_baseline:
            found.append(Regrouping(incident.created_at, (incident.key,), keys))
        else:
            found.append(Regrouping(incident.created_at, keys, (incident.key,)))
    return found


def _regrouping_difference(
    kind: str, group: Regrouping, baseline: SimulationResult, candidate: SimulationResult
) -> IncidentDifference:
    """Describe a merge or split: how many incidents become how many, and the pages and runbook runs of each side."""
    title = candidate.incident(group.candidate[0]).title if kind == "merged" else baseline.incident(group.baseline[0]).title
    changes = [f"{len(group.baseline)} incidents become 1" if kind == "merged" else f"1 incident becomes {len(group.candidate)}"]
    before_pages, after_pages = _pages_of(baseline), _pages_of(candidate)
    before_runs, after_runs = _runs_of(baseline), _runs_of(candidate)
    pages_before = sum((before_pages[key] for key in group.baseline), Counter())
    pages_after = sum((after_pages[key] for key in group.candidate), Counter())
    if pages_before != pages_after:
        changes.append(f"pages: {_page_text(pages_before)} -> {_page_text(pages_after)}")
    runs_before = sorted(name for key in group.baseline for name in before_runs[key])
    runs_after = sorted(name for key in group.candidate for name in after_runs[key])
    if runs_before != runs_after:
        changes.append(f"runbooks: {', '.join(runs_before) or 'none'} -> {', '.join(runs_after) or 'none'}")
    return IncidentDifference(kind, group.at, title, group.baseline, group.candidate, tuple(changes))


def _changed(baseline: SimulationResult, candidate: SimulationResult) -> list[IncidentDifference]:
    """Return the matched incidents (same events in both versions) that differ in what the rules decided or did."""
    by_events = {incident.events: incident for incident in candidate.incidents if incident.events}
    before_pages, after_pages = _pages_of(baseline), _pages_of(candidate)
    before_runs, after_runs = _runs_of(baseline), _runs_of(candidate)
    found = []
    for old in baseline.incidents:
        new = by_events.get(old.events)
        if new is None or not old.events:
            continue
        changes = []
        for name, before, after in (
            ("receivers", ", ".join(old.receivers), ", ".join(new.receivers)),
            ("severity", old.severity or "none", new.severity or "none"),
            ("team", old.team or "none", new.team or "none"),
            ("pages", _page_text(before_pages[old.key]), _page_text(after_pages[new.key])),
            ("escalation level", str(old.escalation_level), str(new.escalation_level)),
            ("runbooks", ", ".join(before_runs[old.key]) or "none", ", ".join(after_runs[new.key]) or "none"),
        ):
            if before != after:
                changes.append(f"{name}: {before} -> {after}")
        if changes:
            found.append(IncidentDifference("changed", old.created_at, old.title, (old.key,), (new.key,), tuple(changes)))
    return found


def _pages_of(result: SimulationResult) -> dict[str, Counter[str]]:
    pages: dict[str, Counter[str]] = {incident.key: Counter() for incident in result.incidents}
    for page in result.pages:
        pages.setdefault(page.incident, Counter())[page.receiver] += 1
    return pages


def _page_text(counts: Counter[str]) -> str:
    return ", ".join(f"{receiver} {count}" for receiver, count in sorted(counts.items())) or "none"


def _runs_of(result: SimulationResult) -> dict[str, list[str]]:
    runs: dict[str, list[str]] = {incident.key: [] for incident in result.incidents}
    for run in result.runbooks:
        if run.status == "started":
            runs.setdefault(run.incident, []).append(run.runbook)
    return {key: sorted(names) for key, names in runs.items()}


def _counts(before: dict[str, int], after: dict[str, int]) -> dict[str, Count]:
    return {name: Count(before.get(name, 0), after.get(name, 0)) for name in sorted(set(before) | set(after))}


def _runbooks(result: SimulationResult, status: str) -> dict[str, int]:
    return dict(Counter(run.runbook for run in result.runbooks if run.status == status))


def _levels(baseline: SimulationResult, candidate: SimulationResult) -> dict[int, Count]:
    """Return, for each escalation level reached in either version, how many incidents reached at least that level."""
    top = max([0, *(incident.escalation_level for incident in (*baseline.incidents, *candidate.incidents))])
    return {
        level: Count(
            sum(1 for incident in baseline.incidents if incident.escalation_level >= level),
            sum(1 for incident in candidate.incidents if incident.escalation_level >= level),
        )
        for level in range(1, top + 1)
    }
