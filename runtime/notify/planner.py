"""Notification groups: which receivers are notified about an incident, when, and with which messages.

Each incident has one notification group per receiver, with the timing of
the route that sent the alert there, as in Alertmanager:

- the first message waits `group_wait` after the group starts, so alerts that
  fire together arrive in one message;
- a change (an alert joins or resolves, the severity rises, the incident is
  resolved) is sent at most once per `group_interval`;
- an open, unacknowledged incident gets a reminder after `repeat_interval`.
  Once someone has acknowledged it, reminders stop.

An acknowledgement or resolution by a person is sent at once. The pipeline
and the incident operations only mark a group due, in their own transaction.
`queue_due` later renders the messages and inserts them into the outbox, one
row per channel. Each row has an idempotency key, so a group never sends two
messages about the same change.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from compiler import ir
from runtime.incidents import ENDED
from runtime.notify import context as message_context
from runtime.notify.model import Outbound
from runtime.policy import SEVERITY_RANK, Policy, Timing
from runtime.store import Store
from runtime.store.schema import incidents, notification_groups, outbox, timeline

log = logging.getLogger("irules.notify")

# Maximum number of ids in one SQL `IN` list.
_IN_CHUNK = 500
# Maximum number of due groups queued per transaction.
QUEUE_BATCH = 200
# Seconds until a due group whose route is muted is checked again.
MUTED_RECHECK_S = 60.0

Renderer = Callable[[ir.Channel, str, dict[str, Any], ir.Ruleset], Outbound]

# The statements of `mark_due`, which runs in every pipeline batch. They are built once, so
# SQLAlchemy finds them in its compiled cache instead of building them for every call.
_RECEIVERS_BY_ID = sa.select(incidents.c.id, incidents.c.receivers, incidents.c.team).where(
    incidents.c.id.in_(sa.bindparam("ids", expanding=True))
)
_GROUPS_BY_INCIDENT = sa.select(notification_groups).where(
    notification_groups.c.incident_id.in_(sa.bindparam("ids", expanding=True))
)
_INSERT_GROUP = notification_groups.insert()
_UPDATE_DUE = (
    notification_groups.update()
    .where(notification_groups.c.id == sa.bindparam("b_id"))
    .values(due_at=sa.bindparam("b_due_at"), via_alertmanager=sa.bindparam("b_via"))
)


@dataclass(slots=True)
class Touch:
    """Changes to one incident within one transaction, as its notification groups need them.

    `timings` maps each receiver to the (group wait, group interval, repeat interval,
    route id) of the route that sent it the first changed alert. `via_alertmanager` is
    True when every alert of the change came through Alertmanager, False when at least
    one did not, and None when no alert took part. `at` is the time of the first change.
    """

    at: datetime.datetime
    timings: dict[str, Timing] = field(default_factory=dict)
    via_alertmanager: bool | None = None

    def add(self, timings: dict[str, Timing], source: str | None) -> None:
        """Merge one alert's route timings and source. The first timing per receiver is kept."""
        for receiver, timing in timings.items():
            self.timings.setdefault(receiver, timing)
        if source is not None:
            from_alertmanager = source == "alertmanager"
            self.via_alertmanager = (
                from_alertmanager if self.via_alertmanager is None else self.via_alertmanager and from_alertmanager
            )


def receivers_of(policy: Policy | None, incident: dict[str, Any]) -> list[str]:
    """Return the receivers of the incident's alert routes, or else its team if the team is a receiver."""
    if incident["receivers"]:
        return list(incident["receivers"])
    team = incident["team"]
    if team and (policy is None or team in policy.receivers):
        return [team]
    return []


def mark_due(connection: sa.Connection, policy: Policy, touches: dict[int, Touch]) -> None:
    """Create the notification groups of changed incidents or update their due time, in the caller's transaction."""
    ids = sorted(touches)
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        rows = {row["id"]: row for row in connection.execute(_RECEIVERS_BY_ID, {"ids": chunk}).mappings()}
        groups = {
            (row["incident_id"], row["receiver"]): row
            for row in connection.execute(_GROUPS_BY_INCIDENT, {"ids": chunk}).mappings()
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for incident_id in chunk:
            incident = rows.get(incident_id)
            if incident is None:
                continue
            touch = touches[incident_id]
            now = touch.at
            for receiver in receivers_of(policy, incident):
                group = groups.get((incident_id, receiver))
                if group is None:
                    wait, interval, repeat, route_id = touch.timings.get(receiver) or policy.timings_of(receiver)
                    inserts.append(
                        {
                            "incident_id": incident_id,
                            "receiver": receiver,
                            "route_id": route_id,
                            "group_wait_s": wait,
                            "group_interval_s": interval,
                            "repeat_interval_s": repeat,
                            "via_alertmanager": bool(touch.via_alertmanager),
                            "created_at": now,
                            "due_at": now + datetime.timedelta(seconds=wait),
                            "notified_state": None,
                            "notified_at": None,
                            "notified_count": 0,
                        }
                    )
                    continue
                due = _next_due(group, now)
                via = group["via_alertmanager"] and touch.via_alertmanager is not False
                if due != group["due_at"] or via != group["via_alertmanager"]:
                    updates.append({"b_id": group["id"], "b_due_at": due, "b_via": via})
        if inserts:
            connection.execute(_INSERT_GROUP, inserts)
        if updates:
            connection.execute(_UPDATE_DUE, updates)


def _next_due(group: Any, now: datetime.datetime) -> datetime.datetime:
    """Return the next due time of a changed group, no sooner than one group interval after its last message."""
    if group["notified_at"] is None:
        # The group has sent nothing yet, so it keeps the due time that its group wait set.
        # A group whose incident ended within its wait and came back waits again.
        return group["due_at"] or now + datetime.timedelta(seconds=group["group_wait_s"])
    earliest = group["notified_at"] + datetime.timedelta(seconds=group["group_interval_s"])
    due = max(now, earliest)
    return due if group["due_at"] is None else min(group["due_at"], due)


def mark_due_now(connection: sa.Connection, incident_id: int, now: datetime.datetime) -> None:
    """Make every group of the incident that has already sent a message due now.

    The incident operations call this when a person acknowledges, resolves or changes an incident.
    """
    connection.execute(
        notification_groups.update()
        .where(notification_groups.c.incident_id == incident_id, notification_groups.c.notified_at.is_not(None))
        .values(due_at=now)
    )


# ---------------------------------------------------------------- queueing messages


def phase_of(incident: dict[str, Any]) -> str:
    """Return the incident's notification phase: `open`, `acknowledged` or `resolved`."""
    if incident["status"] in ENDED:
        return "resolved"
    return "acknowledged" if incident["acknowledged_at"] is not None else "open"


def state_of(incident: dict[str, Any]) -> str:
    """Return the notified facts of an incident as one string: phase, severity and alert counts.

    A value that differs from the group's `notified_state` means there is news. The
    escalation level is left out because escalation steps send their own messages.
    """
    return "|".join(
        str(part)
        for part in (
            phase_of(incident),
            incident["severity"],
            incident["alert_count"],
            incident["firing_count"],
        )
    )


def event_for(group: Any, incident: dict[str, Any], now: datetime.datetime) -> str | None:
    """Return the event that a due group sends, or None when there is nothing new."""
    state = state_of(incident)
    phase = phase_of(incident)
    previous = group["notified_state"]
    if previous is None or group["notified_at"] is None:
        # An incident that ended before its group wait was over is not announced.
        return None if phase == "resolved" else "opened"
    if state == previous:
        if phase != "open" or group["notified_at"] is None:
            return None
        repeat_at = group["notified_at"] + datetime.timedelta(seconds=group["repeat_interval_s"])
        return "reminder" if now >= repeat_at else None
    previous_phase = previous.split("|", 1)[0]
    if phase == "resolved":
        return "resolved" if previous_phase != "resolved" else None
    if phase == "acknowledged" and previous_phase == "open":
        return "acknowledged"
    return "updated"


def queue_due(store: Store, policy: Policy, now: datetime.datetime, render: Renderer | None = None) -> int:
    """Queue the messages of every due group, one batch per transaction, and return the number of rows queued."""
    render = render or _default_renderer()
    queued = 0
    while True:
        with store.write() as connection:
            # On PostgreSQL each node locks the due groups it reads and skips those another node
            # has locked, so each group's message is queued by one node.
            groups = (
                connection.execute(
                    sa.select(notification_groups)
                    .where(notification_groups.c.due_at <= now)
                    .order_by(notification_groups.c.due_at, notification_groups.c.id)
                    .limit(QUEUE_BATCH)
                    .with_for_update(skip_locked=True)
                )
                .mappings()
                .all()
            )
            if not groups:
                return queued
            rows = _incidents(connection, {group["incident_id"] for group in groups})
            for group in groups:
                queued += _queue_group(connection, policy, render, group, rows[group["incident_id"]], now)
        if len(groups) < QUEUE_BATCH:
            return queued


def _incidents(connection: sa.Connection, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Return the incident rows with the given ids, by id."""
    found: dict[int, dict[str, Any]] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), _IN_CHUNK):
        chunk = ordered[start : start + _IN_CHUNK]
        for row in connection.execute(sa.select(incidents).where(incidents.c.id.in_(chunk))).mappings():
            found[row["id"]] = dict(row)
    return found


def _queue_group(
    connection: sa.Connection, policy: Policy, render: Renderer, group: Any, incident: dict[str, Any], now: datetime.datetime
) -> int:
    """Queue the group's message if it has news, set its next due time, and return the number of rows queued."""
    event = event_for(group, incident, now)
    silence = policy.silence(group["route_id"], now) if event is not None else None
    if silence is not None:
        # As in Alertmanager, nothing is sent while the route is muted. The news goes out
        # at the first check after the time interval ends.
        log.debug("incident %s: %s is %s", incident["key"], group["receiver"], silence.describe())
        due = now + datetime.timedelta(seconds=MUTED_RECHECK_S)
        connection.execute(notification_groups.update().where(notification_groups.c.id == group["id"]).values(due_at=due))
        return 0
    values: dict[str, Any] = {"due_at": None}
    queued = 0
    if event is not None:
        count = group["notified_count"] + 1
        queued = queue_messages(
            connection,
            policy,
            render,
            incident,
            group["receiver"],
            event,
            now,
            key=f"group:{group['id']}:{count}",
            skip_alertmanager=group["via_alertmanager"],
            cancel_on="acknowledged" if event == "reminder" else None,
        )
        values.update(notified_state=state_of(incident), notified_at=now, notified_count=count)
    elif group["notified_state"] is None:
        values["notified_state"] = state_of(incident)
    if phase_of(incident) == "open" and (event is not None or group["notified_at"] is not None):
        last = now if event is not None else group["notified_at"]
        values["due_at"] = last + datetime.timedelta(seconds=group["repeat_interval_s"])
    connection.execute(notification_groups.update().where(notification_groups.c.id == group["id"]).values(**values))
    return queued


def queue_messages(
    connection: sa.Connection,
    policy: Policy,
    render: Renderer,
    incident: dict[str, Any],
    receiver_name: str,
    event: str,
    now: datetime.datetime,
    *,
    key: str,
    skip_alertmanager: bool = False,
    cancel_on: str | None = None,
    escalation: dict[str, Any] | None = None,
    kinds: tuple[str, ...] = (),
    approval: dict[str, Any] | None = None,
) -> int:
    """Queue one rendered message per channel of a receiver, note it on the timeline, and return the rows queued.

    `key` identifies this notification. Each channel's row key appends the channel's
    position, so queueing the same notification twice adds nothing. `kinds` limits
    the channels to those kinds when the receiver has a channel of one of them.
    """
    from targets.alertmanager import delivered_by_alertmanager

    receiver = policy.receivers.get(receiver_name)
    if receiver is None:
        log.warning("incident %s: receiver %s is not in the rules; nothing sent", incident["key"], receiver_name)
        return 0
    settings = policy.ruleset.settings
    channels = list(enumerate(receiver.channels))
    if kinds and any(channel.kind in kinds for _index, channel in channels):
        channels = [(index, channel) for index, channel in channels if channel.kind in kinds]
    if event == "approval":
        # A PagerDuty event would change the incident's page, which an approval request is not.
        channels = [(index, channel) for index, channel in channels if channel.kind != "pagerduty"]
    context = message_context.build(connection, policy, incident, event, now, escalation, approval)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for index, channel in channels:
        if event == "resolved" and channel.send_resolved is False:
            continue
        # Alertmanager never acknowledges in PagerDuty, and the daemon's own pages (escalation) need
        # their acknowledgement and resolution, so those always go out from here.
        closing_page = channel.kind == "pagerduty" and event in ("acknowledged", "resolved")
        if skip_alertmanager and not closing_page and delivered_by_alertmanager(channel, receiver.name, settings):
            skipped.append(channel.kind)
            continue
        try:
            outbound = render(channel, receiver.name, context, policy.ruleset)
        except Exception:
            log.exception(
                "incident %s: the %s message for %s could not be rendered", incident["key"], channel.kind, receiver.name
            )
            continue
        from runtime.notify.channels import endpoint_key

        rows.append(
            {
                "key": f"{key}:{index}",
                "incident_id": incident["id"],
                "receiver": receiver.name,
                "channel": channel.kind,
                "endpoint": endpoint_key(outbound, settings)[:300],
                "event": event,
                "priority": SEVERITY_RANK.get(incident["severity"] or "", 0),
                "message": outbound.to_json(),
                "cancel_on": cancel_on,
                "status": "pending",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
                "reference": {},
            }
        )
    inserted = _insert_new(connection, rows)
    if inserted or skipped:
        kinds_text = ", ".join(row["channel"] for row in rows)
        message = (
            f"Notified {receiver.name} ({event}) via {kinds_text}"
            if rows
            else f"Nothing for the daemon to send to {receiver.name} ({event})"
        )
        if skipped:
            message += f"; Alertmanager delivers {', '.join(skipped)}"
        connection.execute(
            timeline.insert().values(
                incident_id=incident["id"],
                at=now,
                kind="notification.queued",
                actor="irules",
                message=message,
                data={"receiver": receiver.name, "event": event, "channels": [row["channel"] for row in rows], "key": key},
            )
        )
    return inserted


def _insert_new(connection: sa.Connection, rows: list[dict[str, Any]]) -> int:
    """Insert the outbox rows whose key is not stored yet and return how many were inserted."""
    if not rows:
        return 0
    existing = set(connection.execute(sa.select(outbox.c.key).where(outbox.c.key.in_([row["key"] for row in rows]))).scalars())
    fresh = [row for row in rows if row["key"] not in existing]
    if fresh:
        connection.execute(outbox.insert(), fresh)
    return len(fresh)


def _default_renderer() -> Renderer:
    from runtime.notify.messages import render_message

    return render_message
