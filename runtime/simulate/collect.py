"""Reading what the real pipeline and notification code wrote into the scratch store: pages, escalation steps, runbook runs.

After each due moment the engine calls `Collector.collect`, which reads the
outbox rows and timeline entries written since the last call. Outbox rows are
then marked sent at that virtual time, as the daemon's outbox would send them
at once, so a later acknowledgement cannot cancel a page that already went out.
Runbook runs are planned with the dry-run planner and finished at once,
without executing a step.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa

from runtime.policy import Policy
from runtime.simulate.result import ALERTMANAGER, IRULES, EscalationStep, Page, RunbookRun
from runtime.store import Store
from runtime.store.schema import incidents, notification_groups, outbox, runbook_runs, timeline, timers

# Timeline kinds that the collector reads.
KINDS = ("notification.queued", "escalation.step", "runbook.started", "runbook.refused")
SIMULATED = "simulated"


class Collector:
    """Accumulates the pages, escalation steps and runbook runs of one simulation."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.pages: list[Page] = []
        self.escalations: list[EscalationStep] = []
        self.runbooks: list[RunbookRun] = []
        self._outbox_seen = 0
        self._timeline_seen = 0
        self._keys: dict[int, str] = {}

    def collect(self, store: Store, now: datetime.datetime) -> None:
        """Read what was written since the last call, mark new outbox rows sent, and finish new runbook runs."""
        started: list[int] = []
        with store.write() as connection:
            self._read_outbox(connection, now)
            entries = (
                connection.execute(
                    sa.select(timeline)
                    .where(timeline.c.id > self._timeline_seen, timeline.c.kind.in_(KINDS))
                    .order_by(timeline.c.id)
                )
                .mappings()
                .all()
            )
            self._timeline_seen = max([self._timeline_seen, *(entry["id"] for entry in entries)])
            for entry in entries:
                started.extend(self._read_entry(connection, dict(entry)))
        self._finish_runs(store, started)

    def incident_key(self, connection: sa.Connection, incident_id: int) -> str:
        """Return an incident's key; keys never change, so they are cached."""
        key = self._keys.get(incident_id)
        if key is None:
            key = connection.execute(sa.select(incidents.c.key).where(incidents.c.id == incident_id)).scalar_one()
            self._keys[incident_id] = key
        return key

    # ------------------------------------------------------------ pages

    def _read_outbox(self, connection: sa.Connection, now: datetime.datetime) -> None:
        rows = connection.execute(sa.select(outbox).where(outbox.c.id > self._outbox_seen).order_by(outbox.c.id)).mappings().all()
        if not rows:
            return
        self._outbox_seen = rows[-1]["id"]
        for row in rows:
            if row["status"] != "pending" or row["incident_id"] is None:
                continue
            key = self.incident_key(connection, row["incident_id"])
            self.pages.append(Page(row["created_at"], key, row["receiver"] or "", row["channel"], row["event"], IRULES))
        connection.execute(
            outbox.update()
            .where(outbox.c.id.between(rows[0]["id"], self._outbox_seen), outbox.c.status == "pending")
            .values(status="sent", sent_at=now, attempts=1)
        )

    def _alertmanager_pages(self, connection: sa.Connection, entry: dict[str, Any]) -> None:
        """Add the pages that Alertmanager itself delivers for a group message of an alert that came through it."""
        data = entry["data"]
        key = str(data.get("key") or "")
        if not key.startswith("group:"):
            return
        group_id = int(key.split(":")[1])
        via = connection.execute(
            sa.select(notification_groups.c.via_alertmanager).where(notification_groups.c.id == group_id)
        ).scalar()
        if not via:
            return
        incident = self.incident_key(connection, entry["incident_id"])
        for kind in alertmanager_channels(self.policy, data["receiver"], data["event"]):
            self.pages.append(Page(entry["at"], incident, data["receiver"], kind, data["event"], ALERTMANAGER))

    # ------------------------------------------------------------ timeline entries

    def _read_entry(self, connection: sa.Connection, entry: dict[str, Any]) -> list[int]:
        """Record one timeline entry and return the id of the runbook run it started, if any."""
        kind = entry["kind"]
        if kind == "notification.queued":
            self._alertmanager_pages(connection, entry)
        elif kind == "escalation.step":
            self._escalation_step(connection, entry)
        elif kind == "runbook.started":
            self._runbook_started(connection, entry)
            return [int(entry["data"]["run"])]
        elif kind == "runbook.refused":
            incident = self.incident_key(connection, entry["incident_id"])
            self.runbooks.append(RunbookRun(entry["at"], incident, entry["data"]["runbook"], "refused", detail=entry["message"]))
        return []

    def _escalation_step(self, connection: sa.Connection, entry: dict[str, Any]) -> None:
        data = entry["data"]
        step = connection.execute(sa.select(timers.c.data).where(timers.c.key == data["timer"])).scalar_one()
        incident = self.incident_key(connection, entry["incident_id"])
        target = step.get("target") if step["action"] != "escalate" else None
        self.escalations.append(EscalationStep(entry["at"], incident, int(data.get("level") or 0), step["action"], target))

    def _runbook_started(self, connection: sa.Connection, entry: dict[str, Any]) -> None:
        run = connection.execute(sa.select(runbook_runs).where(runbook_runs.c.id == int(entry["data"]["run"]))).mappings().one()
        incident = self.incident_key(connection, entry["incident_id"])
        path, undecided, detail = planned_path(self.policy, run["runbook_id"], run["values"])
        self.runbooks.append(RunbookRun(run["created_at"], incident, run["runbook_id"], "started", path, undecided, detail))

    def _finish_runs(self, store: Store, run_ids: list[int]) -> None:
        from runtime.runbooks import runs

        for run_id in run_ids:
            with store.read() as connection:
                created = connection.execute(sa.select(runbook_runs.c.created_at).where(runbook_runs.c.id == run_id)).scalar_one()
            # NOTE: a simulated run takes no virtual time, so its concurrency key is free again at
            # once. A real run keeps the key until it ends, so a run that starts meanwhile is rejected.
            runs.finish_run(store, run_id, SIMULATED, "not executed: planned by the simulation", created)


def alertmanager_channels(policy: Policy, receiver_name: str, event: str) -> list[str]:
    """Return the channel kinds of a receiver that Alertmanager delivers for a group message with this event.

    These are the channels the planner leaves to Alertmanager (see `queue_messages` in
    `runtime.notify.planner`). An acknowledgement is an irules event that Alertmanager
    never sends, so it has none.
    """
    from targets.alertmanager import delivered_by_alertmanager

    receiver = policy.receivers.get(receiver_name)
    if receiver is None or event == "acknowledged":
        return []
    kinds = []
    for channel in receiver.channels:
        if event == "resolved" and channel.send_resolved is False:
            continue
        if channel.kind == "pagerduty" and event == "resolved":
            # The daemon closes PagerDuty incidents itself, so that page is an outbox row.
            continue
        if delivered_by_alertmanager(channel, receiver.name, policy.ruleset.settings):
            kinds.append(channel.kind)
    return kinds


def planned_path(policy: Policy, runbook_id: str, values: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """Return (path, undecided steps, detail) of a runbook run from the dry-run planner, approvals granted.

    The path lists the steps that would run, in order. A step whose condition is
    false is skipped, and failure-path steps are left out. The path ends at a step
    whose parameters its action rejects, because the run would fail there.
    """
    from runtime.runbooks.graph import build_step_graph
    from runtime.runbooks.plan import build_plan

    runbook = next((item for item in policy.ruleset.runbooks if item.id == runbook_id), None)
    if runbook is None:
        return (), (), f"runbook {runbook_id} is not in the rules"
    failure_path = build_step_graph(runbook).failure_path
    path: list[str] = []
    undecided: list[str] = []
    detail = None
    for step in build_plan(policy.ruleset, runbook, values).steps:
        if step.name in failure_path or step.condition_holds is False:
            continue
        path.append(step.name)
        if step.condition is not None and step.condition_holds is None:
            undecided.append(step.name)
        if step.rejected:
            detail = f"step {step.name} would fail: {step.rejected}"
            break
    return tuple(path), tuple(undecided), detail
