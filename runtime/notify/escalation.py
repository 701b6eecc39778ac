"""Escalation: timers that notify, page or raise the level while an incident stays unacknowledged or unresolved.

When an incident opens, every step of its team's escalation policy, for every
round of `repeat`, becomes a row in `timers` with the moment it is due. The
rows are the schedule: a restart loses nothing, and a rules edit does not
change the steps of incidents already running.

A timer fires once: the transaction that marks it fired also queues its
messages. An acknowledgement cancels the `unacknowledged` timers and the
messages they queued that have not gone out, in the same transaction as the
acknowledgement; a resolution cancels all of them. A message of a step that is
being sent at that moment holds the acknowledgement back until it is done
(see `acknowledge` in `runtime.incidents`), so nothing an escalation sends
arrives after the acknowledgement is committed.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import sqlalchemy as sa

from compiler import ir
from runtime.incidents import ENDED
from runtime.notify import planner
from runtime.policy import Policy
from runtime.store import Store
from runtime.store.schema import incidents, outbox, timeline, timers

log = logging.getLogger("irules.escalation")

UNACKNOWLEDGED = "escalation.unacknowledged"
UNRESOLVED = "escalation.unresolved"
KINDS = {"unacknowledged": UNACKNOWLEDGED, "unresolved": UNRESOLVED}
# Timers fired per transaction.
FIRE_BATCH = 100
# Channels a `page` step uses when the receiver has any of them; otherwise all its channels.
PAGING_KINDS = ("pagerduty", "sms")
# A repeat without `every` starts when the last step of the round is due, but not sooner than this.
MIN_PERIOD_S = 60.0


def describe(step: dict[str, Any]) -> str:
    """Return a step as the rules write it, such as `after 10m unacknowledged page critical-infrastructure`."""
    text = f"after {_duration(step['after_s'])} {step['state']} {step['action']}"
    if step["action"] == "escalate":
        return text + (f" to {step['level']}" if step.get("level") else "")
    return text + (f" {step['target']}" if step.get("target") else "")


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def schedule(connection: sa.Connection, policy: Policy, incident: dict[str, Any], now: datetime.datetime) -> int:
    """Start the escalation of an incident that opened or reopened at `now`; return how many timers were set.

    A reopened incident starts again from the first step; timers of its earlier
    run that are still pending are cancelled.
    """
    escalation = policy.escalation_for(incident["team"], planner.receivers_of(policy, incident))
    if escalation is None or not escalation.steps:
        return 0
    cancel(connection, incident["id"], "resolved", now, reason="escalation restarted")
    rows = _timer_rows(escalation, incident["id"], now)
    connection.execute(timers.insert(), rows)
    connection.execute(
        incidents.update()
        .where(incidents.c.id == incident["id"])
        .values(escalation_policy=escalation.name, escalation_started_at=now, escalation_level=0)
    )
    return len(rows)


def _timer_rows(escalation: ir.Escalation, incident_id: int, now: datetime.datetime) -> list[dict[str, Any]]:
    period = escalation.repeat_every_s or max(MIN_PERIOD_S, max(step.after_s for step in escalation.steps))
    epoch = now.strftime("%Y%m%dT%H%M%S.%f")
    rows = []
    for round_number in range(1 + escalation.repeat):
        for index, step in enumerate(escalation.steps):
            data = {
                "policy": escalation.name,
                "round": round_number,
                "step": index,
                "after_s": step.after_s,
                "state": step.state,
                "action": step.action,
                "target": step.target,
                "level": step.level,
                "severities": list(step.severities),
            }
            rows.append(
                {
                    "key": f"escalation:{incident_id}:{epoch}:{round_number}:{index}",
                    "kind": KINDS[step.state],
                    "incident_id": incident_id,
                    "due_at": now + datetime.timedelta(seconds=round_number * period + step.after_s),
                    "status": "pending",
                    "data": data,
                    "created_at": now,
                }
            )
    return rows


def cancel(
    connection: sa.Connection, incident_id: int, on: str, now: datetime.datetime, reason: str | None = None
) -> tuple[int, int]:
    """Cancel pending timers and unsent escalation messages that `on` (acknowledged or resolved) ends.

    Returns (timers cancelled, messages cancelled).
    """
    kinds = [UNACKNOWLEDGED] if on == "acknowledged" else [UNACKNOWLEDGED, UNRESOLVED]
    ends = ["acknowledged"] if on == "acknowledged" else ["acknowledged", "resolved"]
    why = reason or f"incident {on}"
    stopped = connection.execute(
        timers.update()
        .where(timers.c.incident_id == incident_id, timers.c.status == "pending", timers.c.kind.in_(kinds))
        .values(status="cancelled", done_at=now, outcome=why)
    ).rowcount
    withdrawn = connection.execute(
        outbox.update()
        .where(outbox.c.incident_id == incident_id, outbox.c.status == "pending", outbox.c.cancel_on.in_(ends))
        .values(status="cancelled", last_error=why)
    ).rowcount
    return stopped, withdrawn


def sending(connection: sa.Connection, incident_id: int, on: str, now: datetime.datetime) -> int:
    """Return how many messages that `on` would cancel are being sent right now (claimed, lease not expired)."""
    ends = ["acknowledged"] if on == "acknowledged" else ["acknowledged", "resolved"]
    return connection.execute(
        sa.select(sa.func.count()).where(
            outbox.c.incident_id == incident_id,
            outbox.c.status == "sending",
            outbox.c.cancel_on.in_(ends),
            outbox.c.lease_until > now,
        )
    ).scalar_one()


def next_due(store: Store) -> datetime.datetime | None:
    with store.read() as connection:
        return connection.execute(sa.select(sa.func.min(timers.c.due_at)).where(timers.c.status == "pending")).scalar()


def fire_due(store: Store, policy: Policy, now: datetime.datetime, render: planner.Renderer | None = None) -> int:
    """Fire every timer due at `now`, a batch per transaction; return how many fired."""
    render = render or planner._default_renderer()
    fired = 0
    while True:
        with store.write() as connection:
            due = (
                connection.execute(
                    sa.select(timers)
                    .where(timers.c.status == "pending", timers.c.due_at <= now)
                    .order_by(timers.c.due_at, timers.c.id)
                    .limit(FIRE_BATCH)
                )
                .mappings()
                .all()
            )
            for timer in due:
                if _fire(connection, policy, render, timer, now):
                    fired += 1
        if len(due) < FIRE_BATCH:
            return fired


def _fire(connection: sa.Connection, policy: Policy, render: planner.Renderer, timer: Any, now: datetime.datetime) -> bool:
    """Fire one timer in the caller's transaction; return False when another worker fired it first."""
    claimed = connection.execute(
        timers.update().where(timers.c.id == timer["id"], timers.c.status == "pending").values(status="fired", done_at=now)
    ).rowcount
    if not claimed:
        return False
    step = timer["data"]
    incident = dict(connection.execute(sa.select(incidents).where(incidents.c.id == timer["incident_id"])).mappings().one())
    outcome = _skip_reason(step, incident)
    if outcome is not None:
        connection.execute(timers.update().where(timers.c.id == timer["id"]).values(status="skipped", outcome=outcome))
        return True
    text = describe(step)
    cancel_on = "acknowledged" if step["state"] == "unacknowledged" else "resolved"
    late = (now - timer["due_at"]).total_seconds()
    detail = {
        "policy": step["policy"],
        "round": step["round"],
        "step": step["step"],
        "timer": timer["key"],
        "late_s": round(late, 3),
    }
    if step["action"] == "escalate":
        level = step["level"] or (incident["escalation_level"] or 0) + 1
        connection.execute(
            incidents.update().where(incidents.c.id == incident["id"]).values(escalation_level=level, updated_at=now)
        )
        incident["escalation_level"] = level
        message = f"Escalated to level {level} ({step['policy']}: {text})"
        targets = planner.receivers_of(policy, incident)
        kinds: tuple[str, ...] = ()
    else:
        level = incident["escalation_level"] or 0
        verb = "Paged" if step["action"] == "page" else "Notified"
        message = f"{verb} {step['target']} ({step['policy']}: {text})"
        targets = [step["target"]] if step["target"] else []
        kinds = PAGING_KINDS if step["action"] == "page" else ()
    connection.execute(
        timeline.insert().values(
            incident_id=incident["id"],
            at=now,
            kind="escalation.step",
            actor="irules",
            message=message,
            data={**detail, "level": level},
        )
    )
    escalation = {"policy": step["policy"], "level": level, "step": text}
    queued = 0
    for receiver in targets:
        queued += planner.queue_messages(
            connection,
            policy,
            render,
            incident,
            receiver,
            "escalated",
            now,
            key=f"timer:{timer['id']}:{receiver}",
            cancel_on=cancel_on,
            escalation=escalation,
            kinds=kinds,
        )
    connection.execute(timers.update().where(timers.c.id == timer["id"]).values(outcome=f"{message}; {queued} messages queued"))
    log.info("incident %s: %s; %d messages queued (%.1f s after due)", incident["key"], message, queued, late)
    return True


def _skip_reason(step: dict[str, Any], incident: dict[str, Any]) -> str | None:
    if incident["status"] in ENDED:
        return f"incident {incident['status']}"
    if step["state"] == "unacknowledged" and incident["acknowledged_at"] is not None:
        return "incident acknowledged"
    if step["severities"] and incident["severity"] not in step["severities"]:
        return f"severity {incident['severity'] or 'none'} is not one of {', '.join(step['severities'])}"
    return None
