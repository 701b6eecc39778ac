"""Escalation: timers that notify, page or raise the level while an incident stays unacknowledged or unresolved.

When an incident opens, every step of its team's escalation policy, for every
round of `repeat`, becomes a row in `timers` with the time it is due. The rows
are the schedule, so a restart loses nothing, and a rules edit does not change
the steps of incidents already running.

A timer fires once, because the transaction that marks it fired also queues its
messages. An acknowledgement cancels the `unacknowledged` timers and the unsent
messages that an acknowledgement stops (those of `unacknowledged` steps and the
groups' reminders), in the same transaction as the acknowledgement. A resolution cancels all pending
timers and unsent messages of both kinds. While a step's message is being sent,
the acknowledgement waits until the send is done (see `acknowledge` in
`runtime.incidents`), so nothing an escalation sends arrives after the
acknowledgement is committed.

NOTE: the acknowledgement waits at most `SEND_WAIT_S` (20 s) in `runtime.incidents`.
A send that takes longer can still arrive after the acknowledgement.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import sqlalchemy as sa

from compiler import ir
from compiler.transform import duration_text
from runtime.faults import crash_point
from runtime.incidents import ENDED
from runtime.notify import planner
from runtime.policy import Policy
from runtime.store import Store
from runtime.store.schema import incidents, outbox, timeline, timers

log = logging.getLogger("irules.escalation")

UNACKNOWLEDGED = "escalation.unacknowledged"
UNRESOLVED = "escalation.unresolved"
KINDS = {"unacknowledged": UNACKNOWLEDGED, "unresolved": UNRESOLVED}
# Maximum number of timers fired per transaction.
FIRE_BATCH = 100
# Channel kinds that a `page` step uses when the receiver has any of them. Otherwise
# the step uses all of the receiver's channels.
PAGING_KINDS = ("pagerduty", "sms")
# Minimum round length in seconds. A `repeat` without `every` starts the next round
# when the last step of the current one is due, but not sooner than this.
MIN_PERIOD_S = 60.0


def describe(step: dict[str, Any]) -> str:
    """Return a step in rules syntax, such as `after 10m unacknowledged page critical-infrastructure`."""
    text = f"after {duration_text(step['after_s'])} {step['state']} {step['action']}"
    if step["action"] == "escalate":
        return text + (f" to {step['level']}" if step.get("level") else "")
    return text + (f" {step['target']}" if step.get("target") else "")


def schedule(connection: sa.Connection, policy: Policy, incident: dict[str, Any], now: datetime.datetime) -> int:
    """Create the escalation timers of an incident that opened or reopened at `now`, and return their number.

    A reopened incident starts again from the first step. The pending timers and
    unsent messages of its earlier run are cancelled, as on a resolution.
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
    """Return one timer row per step and round. Keys include the start time, so a restarted escalation gets new keys."""
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
    """Cancel the pending timers and unsent messages that `on` (`acknowledged` or `resolved`) ends.

    An acknowledgement ends `unacknowledged` timers and the messages whose `cancel_on`
    is `acknowledged`, reminders included. A resolution ends every timer and every
    message with a `cancel_on`. Returns (timers cancelled, messages cancelled).
    """
    kinds = [UNACKNOWLEDGED] if on == "acknowledged" else [UNACKNOWLEDGED, UNRESOLVED]
    ends = ["acknowledged"] if on == "acknowledged" else ["acknowledged", "resolved"]
    explanation = reason or f"incident {on}"
    stopped = connection.execute(
        timers.update()
        .where(timers.c.incident_id == incident_id, timers.c.status == "pending", timers.c.kind.in_(kinds))
        .values(status="cancelled", done_at=now, outcome=explanation)
    ).rowcount
    withdrawn = connection.execute(
        outbox.update()
        .where(outbox.c.incident_id == incident_id, outbox.c.status == "pending", outbox.c.cancel_on.in_(ends))
        .values(status="cancelled", last_error=explanation)
    ).rowcount
    return stopped, withdrawn


def cancellation_entry(
    connection: sa.Connection, incident_id: int, on: str, stopped: int, withdrawn: int
) -> tuple[str, dict[str, object]] | None:
    """Return the timeline message and data for what `cancel` ended, or None when it ended nothing.

    After an acknowledgement, timers that wait for the resolution still run. The
    message gives their count, so that "cancelled" is not read as "nothing more will happen".
    """
    if not stopped and not withdrawn:
        return None
    remaining = 0
    if on == "acknowledged":
        remaining = connection.execute(
            sa.select(sa.func.count()).where(
                timers.c.incident_id == incident_id, timers.c.status == "pending", timers.c.kind == UNRESOLVED
            )
        ).scalar_one()
    cause = "Acknowledged" if on == "acknowledged" else "Resolved"
    message = f"{cause}: {_count(stopped, 'escalation step')} and {_count(withdrawn, 'unsent message')} cancelled"
    if remaining == 1:
        message += "; 1 step that waits for the resolution still runs"
    elif remaining:
        message += f"; {remaining} steps that wait for the resolution still run"
    return message, {"on": on, "steps": stopped, "messages": withdrawn, "remaining": remaining}


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def sending(connection: sa.Connection, incident_id: int, on: str, now: datetime.datetime) -> int:
    """Return the number of messages that `on` would cancel and that are being sent now, with an unexpired lease."""
    ends = ["acknowledged"] if on == "acknowledged" else ["acknowledged", "resolved"]
    return connection.execute(
        sa.select(sa.func.count()).where(
            outbox.c.incident_id == incident_id,
            outbox.c.status == "sending",
            outbox.c.cancel_on.in_(ends),
            outbox.c.lease_until > now,
        )
    ).scalar_one()


def fire_due(store: Store, policy: Policy, now: datetime.datetime, render: planner.Renderer | None = None) -> int:
    """Fire every timer due by `now`, one batch per transaction, and return how many were fired or skipped."""
    render = render or planner._default_renderer()
    fired = 0
    while True:
        with store.write() as connection:
            # On PostgreSQL each node locks the due timers it reads and skips those another
            # node has locked, so the nodes of a cluster fire disjoint sets of timers.
            due = (
                connection.execute(
                    sa.select(timers)
                    .where(timers.c.status == "pending", timers.c.due_at <= now)
                    .order_by(timers.c.due_at, timers.c.id)
                    .limit(FIRE_BATCH)
                    .with_for_update(skip_locked=True)
                )
                .mappings()
                .all()
            )
            done = 0
            for timer in due:
                if _fire(connection, policy, render, timer, now):
                    done += 1
        fired += done
        if due:
            crash_point("timer.after_commit")
        if len(due) < FIRE_BATCH or done == 0:
            return fired


def _fire(connection: sa.Connection, policy: Policy, render: planner.Renderer, timer: Any, now: datetime.datetime) -> bool:
    """Fire one timer and queue its messages in the caller's transaction.

    Returns False when another worker fired the timer first, or when another
    transaction holds its incident (an acknowledgement, say): the timer then stays
    pending for the next call. Waiting for the incident while this transaction holds
    timer rows could deadlock with an acknowledgement, which locks the incident
    first and then cancels its timers.
    """
    incident_row = (
        connection.execute(sa.select(incidents).where(incidents.c.id == timer["incident_id"]).with_for_update(skip_locked=True))
        .mappings()
        .first()
    )
    if incident_row is None:
        return False
    claimed = connection.execute(
        timers.update().where(timers.c.id == timer["id"], timers.c.status == "pending").values(status="fired", done_at=now)
    ).rowcount
    if not claimed:
        return False

    step = timer["data"]
    incident = dict(incident_row)
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
    crash_point("timer.before_commit")
    return True


def _skip_reason(step: dict[str, Any], incident: dict[str, Any]) -> str | None:
    """Return why a due step no longer applies to the incident, or None when it applies."""
    if incident["status"] in ENDED:
        return f"incident {incident['status']}"
    if step["state"] == "unacknowledged" and incident["acknowledged_at"] is not None:
        return "incident acknowledged"
    if step["severities"] and incident["severity"] not in step["severities"]:
        return f"severity {incident['severity'] or 'none'} is not one of {', '.join(step['severities'])}"
    return None
