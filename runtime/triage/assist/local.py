"""The built-in provider: a diagnosis from the service graph, recent changes, similar incidents and runbook triggers.

It sends nothing over the network and needs no configuration. It reads only
the context's structured facts (services, relations between incidents,
timeline kinds, runbook matches, retrieval scores), never interprets alert
text, and quotes alert text only as evidence. Its confidences are fixed
weights per kind of finding, chosen by hand, not learned:

| finding | confidence |
| --- | --- |
| a runbook whose `when` holds for the incident's alert | 0.9 (0.5 for a runbook without `when`) |
| a dependency with an open incident that started earlier | 0.7, else 0.5 |
| two services of the incident, one depending on the other | 0.65 |
| a similar incident | 0.6 times its similarity score |
| a runbook that ran for a similar incident | 0.6 |
| a runbook whose description resembles the incident | its retrieval score, at most 0.6 |
| a section of the documentation or a post-mortem that resembles the incident | its retrieval score, at most 0.5 |
| the services that depend on a failing service | 0.6, or 0.4 when none does |
| an open incident on a service that depends on a failing one | 0.5 |
| a recent change | 0.4 |
| flapping alerts, the share of alerts firing | 0.3 |

Retrieved documents count from a similarity score of 0.2 on.
"""

from __future__ import annotations

from typing import Any

from runtime.triage.assist.model import Answer, Hypothesis, Recommendation
from runtime.triage.assist.provider import Reply, Request

TRIGGER_CONFIDENCE = 0.9
UNTRIGGERED_CONFIDENCE = 0.5
RETRIEVED_MAX_CONFIDENCE = 0.6
RETRIEVED_MIN_SCORE = 0.2
DOCUMENT_MAX_CONFIDENCE = 0.5
SIMILAR_CONFIDENCE = 0.6
MAX_CHANGES = 3
_MESSAGE_CHARS = 160


class LocalProvider:
    """Diagnose from the facts in the context alone."""

    name = "local"

    def diagnose(self, request: Request) -> Reply:
        data = request.context.data
        hypotheses = {
            "root-cause": _root_causes,
            "impact": _impacts,
            "remediation": _remediation_hypotheses,
        }[request.focus](data)
        documents, cited_documents = _documents(request)
        hypotheses += documents
        recommendations, cited = _recommendations(request)
        cited += cited_documents
        hypotheses.sort(key=lambda item: -item.confidence)
        summary = (
            f"{_count(len(hypotheses), 'hypothesis', 'hypotheses')} and "
            f"{_count(len(recommendations), 'recommendation', 'recommendations')} from the service graph, "
            "recent changes, similar incidents and the runbooks whose trigger holds"
        )
        answer = Answer(summary=summary, hypotheses=hypotheses[:10], recommendations=recommendations[:10], citations=cited)
        return Reply(answer=answer, provider=self.name)


def _root_causes(data: dict[str, Any]) -> list[Hypothesis]:
    found = _dependency_incidents(data) + _dependencies_within(data)
    for change in _changes_before(data)[:MAX_CHANGES]:
        found.append(
            Hypothesis(
                title=f"a recent change may have caused it: {_cut(change['message'])}",
                evidence=[f"{change['at']} {change['kind']} on {change['incident']} by {change['actor']}"],
                confidence=0.4,
            )
        )
    found.extend(_similar(data))
    flapping = [item["name"] for item in data["alerts"] if item.get("flapping")]
    if flapping:
        found.append(
            Hypothesis(
                title="some alerts flap, which points at an unstable check or a threshold close to the measured value",
                evidence=[f"flapping: {', '.join(sorted(set(flapping)))}"],
                confidence=0.3,
            )
        )
    return found


def _changes_before(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the recent changes that may have caused the incident: those made before it started, or to other incidents."""
    incident = data["incident"]
    started = incident["created_at"] or ""
    return [item for item in data["recent_changes"] if item["incident"] != incident["id"] or (item["at"] or "") < started]


def _dependency_incidents(data: dict[str, Any]) -> list[Hypothesis]:
    """Return a hypothesis for each open incident on a service that a service of this incident depends on."""
    created = data["incident"]["created_at"] or ""
    found = []
    for service in data["services"]:
        for other in data["related_incidents"]:
            for name, relation in other["relations"].items():
                if relation != f"{service['name']} depends on it":
                    continue
                earlier = (other.get("created_at") or "") < created
                found.append(
                    Hypothesis(
                        title=f"dependency `{name}` of `{service['name']}` has an open incident, {other['id']}",
                        evidence=[
                            f"{other['id']}: {_cut(other['title'])} ({other['status']}, severity {other['severity'] or 'none'})",
                            f"{other['id']} started {'before' if earlier else 'after'} this incident",
                        ],
                        confidence=0.7 if earlier else 0.5,
                    )
                )
    return found


def _dependencies_within(data: dict[str, Any]) -> list[Hypothesis]:
    """Return a hypothesis for each service of the incident that another service of the incident depends on."""
    names = {service["name"] for service in data["services"]}
    found = []
    for service in data["services"]:
        for dependency in service.get("depends_on", []):
            if dependency in names:
                found.append(
                    Hypothesis(
                        title=f"`{dependency}` is the likely origin, because `{service['name']}` depends on it and both alert",
                        evidence=[f"services of the incident: {', '.join(sorted(names))}"],
                        confidence=0.65,
                    )
                )
    return found


def _similar(data: dict[str, Any]) -> list[Hypothesis]:
    found = []
    for item in data["similar_incidents"]:
        score = _score(item.get("score"))
        evidence = [f"similarity {score:.2f}"]
        if item.get("resolved_at"):
            evidence.append(f"resolved at {item['resolved_at']}")
        if item.get("resolution"):
            evidence.append(f"resolution: {_cut(str(item['resolution']))}")
        found.append(
            Hypothesis(
                title=f"it resembles {item.get('id', 'a past incident')}: {_cut(str(item.get('title', '')))}",
                evidence=evidence,
                confidence=round(SIMILAR_CONFIDENCE * score, 2),
            )
        )
    return found


def _impacts(data: dict[str, Any]) -> list[Hypothesis]:
    found = []
    for service in data["services"]:
        if not service.get("declared", True):
            continue
        affected = service.get("affects") or []
        tier = service.get("tier")
        evidence = [f"tier {tier}" if tier is not None else "no tier declared"]
        if affected:
            evidence.append(f"services depending on it: {', '.join(affected)}")
        title = (
            f"a failure of `{service['name']}` reaches "
            f"{_count(len(affected), 'service that depends', 'services that depend')} on it"
            if affected
            else f"the impact stays within `{service['name']}`: no declared service depends on it"
        )
        found.append(Hypothesis(title=title, evidence=evidence, confidence=0.6 if affected else 0.4))
    for other in data["related_incidents"]:
        for name, relation in other["relations"].items():
            if relation.startswith("it depends on"):
                found.append(
                    Hypothesis(
                        title=f"open incident {other['id']} on `{name}` may be a consequence, because {relation.replace('it', name, 1)}",
                        evidence=[f"{other['id']}: {_cut(other['title'])}"],
                        confidence=0.5,
                    )
                )
    incident = data["incident"]
    found.append(
        Hypothesis(
            title=f"{incident['firing_count']} of {incident['alert_count']} alerts of the incident are firing",
            evidence=[f"alerts: {', '.join(sorted({item['name'] for item in data['alerts']}))}"],
            confidence=0.3,
        )
    )
    return found


def _remediation_hypotheses(data: dict[str, Any]) -> list[Hypothesis]:
    return _dependency_incidents(data) + _dependencies_within(data) + _similar(data)


def _documents(request: Request) -> tuple[list[Hypothesis], list[str]]:
    """Return a hypothesis for each retrieved section of the documentation or a post-mortem that resembles the incident."""
    found = []
    cited = []
    for hit in request.documents:
        if hit.document.kind == "runbook" or hit.score < RETRIEVED_MIN_SCORE:
            continue
        found.append(
            Hypothesis(
                title=f"{hit.document.id} describes a similar case: {_cut(hit.document.title)}",
                evidence=[_cut(hit.document.text), f"similarity {hit.score:.2f}"],
                confidence=round(min(DOCUMENT_MAX_CONFIDENCE, hit.score), 2),
            )
        )
        cited.append(hit.document.id)
    return found, cited


def _recommendations(request: Request) -> tuple[list[Recommendation], list[str]]:
    """Return recommendations of runbooks whose trigger holds, that ran for similar incidents, or that retrieval found."""
    triggers = {item["id"]: item.get("trigger") for item in request.context.catalog["runbooks"]}
    recommendations: dict[str, Recommendation] = {}
    cited: list[str] = []
    for runbook_id in request.context.matches:
        trigger = triggers.get(runbook_id)
        recommendations[runbook_id] = Recommendation(
            kind="runbook",
            name=runbook_id,
            confidence=TRIGGER_CONFIDENCE if trigger else UNTRIGGERED_CONFIDENCE,
            reason=f"its trigger `{trigger}` holds for the incident's first firing alert"
            if trigger
            else "it has no trigger, so it applies to every alert",
        )
        cited.append(f"runbook:{runbook_id}")
    for item in request.context.data["similar_incidents"]:
        for runbook_id in item.get("runbooks") or []:
            if runbook_id in triggers and runbook_id not in recommendations:
                recommendations[runbook_id] = Recommendation(
                    kind="runbook",
                    name=runbook_id,
                    confidence=SIMILAR_CONFIDENCE,
                    reason=f"it ran for the similar incident {item.get('id', '')}",
                )
    for hit in request.documents:
        runbook_id = hit.document.id.removeprefix("runbook:")
        if hit.document.kind != "runbook" or runbook_id in recommendations or hit.score < RETRIEVED_MIN_SCORE:
            continue
        cited.append(hit.document.id)
        recommendations[runbook_id] = Recommendation(
            kind="runbook",
            name=runbook_id,
            confidence=round(min(RETRIEVED_MAX_CONFIDENCE, hit.score), 2),
            reason=f"its description resembles the incident (similarity {hit.score:.2f})",
        )
    ordered = sorted(recommendations.values(), key=lambda item: -item.confidence)
    return ordered, list(dict.fromkeys(cited))


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _score(value: Any) -> float:
    try:
        return max(0.0, min(1.0, float(value)))
    except (TypeError, ValueError):
        return 0.5


def _cut(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "..."
