"""When an incident started, and how long detection, acknowledgement and resolution took.

All three durations count from the same moment: the start of the incident's
earliest alert, as its sender reported it (`startsAt` and the like), or when
irules first saw that alert if the sender gave no start. So time to resolve
includes the time before anyone knew, which is what the people affected
lived through. An incident without alerts (created by hand) starts when it
was created.

- time to detect: start to the incident's creation;
- time to acknowledge: start to the first acknowledgement;
- time to resolve: start to resolution.

A sender's clock may run ahead of ours; a start after the incident's creation
counts as the creation, so no duration is negative.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runtime.store.schema import alerts


@dataclass(frozen=True, slots=True)
class Timings:
    """The moments of one incident and the durations between them, in seconds."""

    started_at: datetime.datetime
    detected_at: datetime.datetime
    acknowledged_at: datetime.datetime | None
    resolved_at: datetime.datetime | None

    @property
    def time_to_detect(self) -> float:
        return (self.detected_at - self.started_at).total_seconds()

    @property
    def time_to_acknowledge(self) -> float | None:
        return None if self.acknowledged_at is None else _since(self.started_at, self.acknowledged_at)

    @property
    def time_to_resolve(self) -> float | None:
        return None if self.resolved_at is None else _since(self.started_at, self.resolved_at)


def _since(start: datetime.datetime, end: datetime.datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def timings_of(incident: Mapping[str, Any], first_alert_at: datetime.datetime | None) -> Timings:
    """Return the timings of `incident` (a row of the incidents table) whose earliest alert started at `first_alert_at`."""
    detected_at = incident["created_at"]
    started_at = detected_at if first_alert_at is None else min(first_alert_at, detected_at)
    return Timings(
        started_at=started_at,
        detected_at=detected_at,
        acknowledged_at=incident["acknowledged_at"],
        resolved_at=incident["resolved_at"],
    )


def first_alert_starts(connection: sa.Connection, incident_ids: Iterable[int] | None = None) -> dict[int, datetime.datetime]:
    """Return the start of the earliest alert of each incident, by incident id; all incidents when `incident_ids` is None."""
    start = sa.func.min(sa.func.coalesce(alerts.c.starts_at, alerts.c.first_seen))
    query = sa.select(alerts.c.incident_id, start).where(alerts.c.incident_id.is_not(None)).group_by(alerts.c.incident_id)
    if incident_ids is not None:
        query = query.where(alerts.c.incident_id.in_(list(incident_ids)))
    found: dict[int, datetime.datetime] = {}
    for incident_id, moment in connection.execute(query):
        if moment is not None:
            found[incident_id] = _as_utc(moment)
    return found


def _as_utc(moment: datetime.datetime | str) -> datetime.datetime:
    """Return `moment` as an aware UTC time: `min` over a UtcDateTime column comes back without the column's conversion."""
    if isinstance(moment, str):
        moment = datetime.datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)
