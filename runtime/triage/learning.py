"""The learning loop: training examples from incidents whose severity a person set.

An incident counts when it is resolved or closed and its `severity_source` is
`person` (someone changed the severity with `irules update`, the API or the
Slack bot). Its example is the alert that set the incident's level: the one
with the highest severity stored on the alert, the earliest first among equals,
labelled with the severity the person chose. Incidents opened by hand have no
alert and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from runtime.store import Store
from runtime.store.schema import alerts, incidents
from runtime.triage.classifier import LEVELS, Example
from runtime.triage.features import AlertText

ENDED_STATUSES = ("resolved", "closed")
_RANK = {level: len(LEVELS) - index for index, level in enumerate(LEVELS)}


@dataclass(slots=True)
class StoreExamples:
    """Examples read from a store, and how many labelled incidents had no alert to learn from."""

    examples: list[Example] = field(default_factory=list)
    incidents: int = 0
    without_alerts: int = 0


def examples_from_store(store: Store) -> StoreExamples:
    """Read one example per ended incident whose severity a person set."""
    query = (
        sa.select(
            incidents.c.id,
            incidents.c.severity.label("incident_severity"),
            alerts.c.name,
            alerts.c.labels,
            alerts.c.annotations,
            alerts.c.severity,
            alerts.c.first_seen,
            alerts.c.key,
        )
        .select_from(incidents.outerjoin(alerts, alerts.c.incident_id == incidents.c.id))
        .where(
            incidents.c.severity_source == "person",
            incidents.c.status.in_(ENDED_STATUSES),
            incidents.c.severity.in_(LEVELS),
        )
        .order_by(incidents.c.id, alerts.c.first_seen, alerts.c.key)
    )
    by_incident: dict[int, list[Any]] = {}
    with store.read() as connection:
        for row in connection.execute(query).mappings():
            by_incident.setdefault(row["id"], []).append(row)
    result = StoreExamples(incidents=len(by_incident))
    for rows in by_incident.values():
        candidates = [row for row in rows if row["name"] is not None]
        if not candidates:
            result.without_alerts += 1
            continue
        # `max` keeps the first of equal candidates, and the rows are in order of first_seen.
        chosen = max(candidates, key=lambda row: _RANK.get(row["severity"] or "", 0))
        alert = AlertText.from_alert({"name": chosen["name"], "labels": chosen["labels"], "annotations": chosen["annotations"]})
        result.examples.append(Example(alert, chosen["incident_severity"], f"store/{chosen['name']}"))
    return result
