"""Message context: the facts a notification reports about an incident, its alerts, services, owner, runbooks and escalation.

Messages are rendered from this context and nothing else, so every channel and
locale reports the same facts. Alert data enters it as plain values, which
templates read but never compile.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import sqlalchemy as sa

from compiler.evaluate import condition_holds
from runtime.alerts import FIRING, Alert
from runtime.policy import Policy, alert_values
from runtime.store.schema import alerts, incidents

log = logging.getLogger("irules.notify")

# Maximum number of alerts listed in one message. The rest are only counted.
MAX_ALERTS = 20


def incident_url(policy: Policy, key: str) -> str | None:
    """Return the URL of the incident's page, or None when neither `incident_url` nor `daemon_url` is set."""
    base = policy.ruleset.settings.incident_url or policy.ruleset.settings.daemon_url
    return None if not base else f"{base.rstrip('/')}/incidents/{key}"


def build(
    connection: sa.Connection,
    policy: Policy,
    incident: dict[str, Any],
    event: str,
    now: datetime.datetime,
    escalation: dict[str, Any] | None = None,
    approval: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the message context of `incident` for `event`, reading its alerts in the caller's transaction.

    `approval` is a runbook step's approval request, for the `approval` event.
    """
    rows = (
        connection.execute(
            sa.select(alerts)
            .where(alerts.c.incident_id == incident["id"])
            .order_by(sa.case((alerts.c.status == FIRING, 0), else_=1), alerts.c.first_seen)
            .limit(MAX_ALERTS)
        )
        .mappings()
        .all()
    )
    alert_list = [
        {
            "name": row["name"],
            "status": row["status"],
            "labels": dict(row["labels"]),
            "annotations": dict(row["annotations"]),
            "starts_at": row["starts_at"] or row["first_seen"],
            "severity": row["severity"],
            "source": row["source"],
            "fingerprint": row["fingerprint"],
        }
        for row in rows
    ]
    services = [policy.services[name] for name in incident["services"] if name in policy.services]
    owner = policy.teams.get(incident["team"] or "")
    return {
        "event": event,
        "incident": {
            "id": incident["key"],
            "number": incident["id"],
            "title": incident["title"],
            "status": incident["status"],
            "severity": incident["severity"],
            "team": incident["team"],
            "services": list(incident["services"]),
            "receivers": list(incident["receivers"]),
            "created_at": incident["created_at"],
            "acknowledged_at": incident["acknowledged_at"],
            "acknowledged_by": incident["acknowledged_by"],
            "resolved_at": incident["resolved_at"],
            "alert_count": incident["alert_count"],
            "firing_count": incident["firing_count"],
            "escalation_level": incident.get("escalation_level") or 0,
            "url": incident_url(policy, incident["key"]),
        },
        "alerts": alert_list,
        "services": [
            {
                "name": service.name,
                "team": service.team,
                "tier": service.tier,
                "runbook_url": service.runbook_url,
                "description": service.description,
                "depends_on": list(service.depends_on),
            }
            for service in services
        ],
        "owner": None if owner is None else {"team": owner.name, "members": list(owner.members)},
        "runbooks": _runbooks(policy, alert_list),
        "similar": _similar(connection, incident),
        "escalation": escalation,
        "approval": approval,
        "now": now,
    }


def _similar(connection: sa.Connection, incident: dict[str, Any]) -> list[dict[str, Any]]:
    """Return past incidents like this one, searched once per incident and kept in its `triage` column.

    The search takes tens of milliseconds, so later messages of the incident reuse the
    first result. A failed search leaves the list empty rather than holding up the message.
    """
    from runtime.notify.messages import MAX_SIMILAR
    from runtime.triage.similar import find_similar

    triage = dict(incident.get("triage") or {})
    if "similar" in triage:
        return list(triage["similar"])
    try:
        found = [entry.to_json() for entry in find_similar(connection, incident["id"], k=MAX_SIMILAR)]
    except Exception as error:  # the message goes out without similar incidents
        log.warning("incident %s: the search for similar incidents failed: %s", incident["key"], error)
        return []
    triage["similar"] = found
    connection.execute(incidents.update().where(incidents.c.id == incident["id"]).values(triage=triage))
    incident["triage"] = triage
    return found


def _runbooks(policy: Policy, alert_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the runbooks whose `when` condition is true for the incident's first firing alert."""
    firing = next((item for item in alert_list if item["status"] == FIRING), None)
    if firing is None or not policy.ruleset.runbooks:
        return []
    alert = Alert.from_row(firing, status=FIRING)
    values = alert_values(alert, policy.service_of(alert.labels))
    found = []
    for runbook in policy.ruleset.runbooks:
        try:
            applies = runbook.when is None or condition_holds(runbook.when, values)
        except Exception as error:  # A condition that cannot be evaluated on this alert leaves the runbook out.
            log.warning("runbook %s: its condition cannot be evaluated on alert %s: %s", runbook.id, alert.name, error)
            applies = False
        if applies:
            found.append({"name": runbook.id, "description": runbook.title or runbook.description or ""})
    return found
