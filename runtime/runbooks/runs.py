"""Runbook runs in the store: starting them under their concurrency key and rate limit, their journal, approvals.

A run row exists before its first step acts, and every step's state is
written before the executor acts on it (see `StoreJournal`), so the store
always shows how far a run got. In the daemon, each of these writes is
fenced on the node's run lease (`check_lease`), so a node that lost the lease
while it stalled cannot write after the node that took the run over. An approval or a decision about an
interrupted step is a row in `approvals`, answered through the CLI, the API or
Slack, and read by the waiting run.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import anyio
import sqlalchemy as sa

from compiler import ir
from compiler.transform import duration_text
from runtime.incidents import IncidentError, _iso, add_timeline
from runtime.runbooks.model import (
    DECISION_ANSWERS,
    FAILED,
    INTERRUPTED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    WAITING,
    Decision,
    StepOutcome,
    StepRecord,
)
from runtime.store import Store
from runtime.store.schema import approvals, incidents, runbook_runs, step_runs

Clock = Callable[[], datetime.datetime]

# Kinds of request a run makes of people.
APPROVAL = "approval"
DECISION = "decision"
ACTIVE = ("running", "waiting")
# Output kept on the timeline per step; the whole capped output stays on the step run.
TIMELINE_OUTPUT = 500


class RunRefused(Exception):
    """A run that may not start now: its concurrency key is taken or its rate limit is reached."""


class LeaseLost(Exception):
    """A write of a run's progress rejected because the writing node no longer holds the run's lease."""

    def __init__(self, run_id: int, owner: str, holder: str | None) -> None:
        super().__init__(f"run {run_id}: node {owner} no longer holds the run's lease (held by {holder or 'no node'})")
        self.run_id = run_id
        self.owner = owner
        self.holder = holder


def check_lease(connection: sa.Connection, run_id: int, lease_owner: str | None) -> None:
    """Lock the run's row in the caller's transaction and raise `LeaseLost` unless `lease_owner` holds its lease.

    `lease_owner` None is the mode without a lease (`irules test-runbook`, tests that
    execute a run directly), and checks nothing. The no-op update takes the row lock
    that a takeover's conditional update of `lease_owner` needs too. So either the
    takeover commits first and this check fails, or the takeover waits for this
    transaction and then reads its writes from the journal.
    """
    if lease_owner is None:
        return
    held = connection.execute(
        runbook_runs.update()
        .where(runbook_runs.c.id == run_id, runbook_runs.c.lease_owner == lease_owner)
        .values(lease_owner=lease_owner)
    ).rowcount
    if held:
        return
    holder = connection.execute(sa.select(runbook_runs.c.lease_owner).where(runbook_runs.c.id == run_id)).scalar()
    raise LeaseLost(run_id, lease_owner, holder)


def concurrency_key(runbook: ir.Runbook, incident_id: int | None, values: dict[str, Any]) -> str:
    """Return the key of which at most one run is active: by default the runbook and the incident."""
    parts = []
    for name in runbook.concurrency:
        if name == "runbook":
            parts.append(f"runbook={runbook.id}")
        elif name == "incident":
            parts.append(f"incident={incident_id}")
        elif name == "service":
            parts.append(f"service={(values.get('service') or {}).get('name', '')}")
        else:
            parts.append(f"{name}={(values.get('labels') or {}).get(name, '')}")
    return ";".join(parts)[:500]


def start_run(
    store: Store,
    runbook: ir.Runbook,
    *,
    incident_id: int | None,
    values: dict[str, Any],
    trigger: str,
    requested_by: str,
    now: datetime.datetime,
    auto_approve: bool = False,
) -> int:
    """Insert a new run and return its id; raise `RunRefused` when its key is taken or its rate limit is reached.

    With `auto_approve`, the approvals of read-only and low-risk steps are granted
    at once in the name of `requested_by` (see `operations.auto_approvable`).
    """
    with store.write() as connection:
        return start_run_in(
            connection,
            runbook,
            incident_id=incident_id,
            values=values,
            trigger=trigger,
            requested_by=requested_by,
            now=now,
            auto_approve=auto_approve,
        )


def start_run_in(
    connection: sa.Connection,
    runbook: ir.Runbook,
    *,
    incident_id: int | None,
    values: dict[str, Any],
    trigger: str,
    requested_by: str,
    now: datetime.datetime,
    auto_approve: bool = False,
) -> int:
    """Insert a new run in the caller's transaction, as `start_run` does."""
    key = concurrency_key(runbook, incident_id, values)
    if runbook.rate_limit is not None:
        count, window_s = runbook.rate_limit
        since = now - datetime.timedelta(seconds=window_s)
        started = connection.execute(
            sa.select(sa.func.count()).where(runbook_runs.c.runbook_id == runbook.id, runbook_runs.c.created_at >= since)
        ).scalar_one()
        if started >= count:
            raise RunRefused(f"runbook {runbook.id} ran {started} times in the last {duration_text(window_s)}, its limit")
    active = connection.execute(sa.select(runbook_runs.c.id).where(runbook_runs.c.concurrency_key == key)).scalar()
    if active is not None:
        raise RunRefused(f"run {active} of runbook {runbook.id} is still active for the same {', '.join(runbook.concurrency)}")
    deadline = None if runbook.timeout_s is None else now + datetime.timedelta(seconds=runbook.timeout_s)
    run_id = connection.execute(
        runbook_runs.insert().values(
            runbook_id=runbook.id,
            incident_id=incident_id,
            concurrency_key=key,
            status=RUNNING,
            trigger=trigger,
            requested_by=requested_by,
            values=_jsonable(values),
            created_at=now,
            deadline_at=deadline,
            auto_approve=auto_approve,
        )
    ).inserted_primary_key[0]
    if incident_id is not None:
        add_timeline(
            connection,
            incident_id,
            now,
            "runbook.started",
            requested_by,
            f"Runbook {runbook.id} started ({trigger}), run {run_id}"
            + (", approving read-only and low-risk steps automatically" if auto_approve else ""),
            {"run": run_id, "runbook": runbook.id, "trigger": trigger, "auto_approve": auto_approve},
        )
    return run_id


def matching_runbooks(policy: Any, values: dict[str, Any], *, auto_only: bool) -> list[ir.Runbook]:
    """Return the runbooks whose `when` holds for an alert's values (only `auto` ones with `auto_only`)."""
    from compiler.evaluate import condition_holds

    found = []
    for runbook in policy.ruleset.runbooks:
        if auto_only and not runbook.auto:
            continue
        try:
            holds = runbook.when is None or condition_holds(runbook.when, values)
        except Exception:  # a condition that cannot be evaluated on this alert does not start the runbook
            holds = False
        if holds:
            found.append(runbook)
    return found


def remediate(
    store: Store,
    policy: Any,
    reference: str,
    actor: str,
    now: datetime.datetime,
    runbook_id: str | None = None,
    auto_approve_safe: bool = False,
) -> list[dict[str, Any]]:
    """Start the runbooks that apply to an incident's first firing alert (or `runbook_id`); return one result per runbook.

    Each result has `runbook` and either `run` (the new run's id) or `refused` (why not).
    With `auto_approve_safe`, approvals of read-only and low-risk steps are granted in the name of `actor`.
    """
    from runtime.alerts import Alert
    from runtime.incidents import get_row
    from runtime.policy import alert_values
    from runtime.store.schema import alerts

    with store.read() as connection:
        incident = dict(get_row(connection, reference))
        first = (
            connection.execute(
                sa.select(alerts).where(alerts.c.incident_id == incident["id"]).order_by(alerts.c.status, alerts.c.first_seen)
            )
            .mappings()
            .first()
        )
    if first is not None:
        alert = Alert.from_row(first)
    else:
        alert = Alert(source="person", name="", status="firing", labels={})
    values = alert_values(alert, policy.service_of(alert.labels))
    values["incident"] = {
        "id": incident["key"],
        "title": incident["title"],
        "severity": incident["severity"],
        "team": incident["team"],
    }
    if runbook_id is not None:
        chosen = [item for item in policy.ruleset.runbooks if item.id == runbook_id]
        if not chosen:
            raise IncidentError(f"no runbook {runbook_id!r} in the rules", status=404)
    else:
        chosen = matching_runbooks(policy, values, auto_only=False)
    results: list[dict[str, Any]] = []
    for runbook in chosen:
        try:
            number = start_run(
                store,
                runbook,
                incident_id=incident["id"],
                values=values,
                trigger="manual",
                requested_by=actor,
                now=now,
                auto_approve=auto_approve_safe,
            )
        except RunRefused as refused:
            results.append({"runbook": runbook.id, "refused": str(refused)})
            continue
        results.append({"runbook": runbook.id, "run": number})
    return results


def finish_run(
    store: Store, run_id: int, state: str, detail: str, now: datetime.datetime, *, lease_owner: str | None = None
) -> None:
    """Write a run's end, free its concurrency key, and note the end on the incident's timeline.

    With `lease_owner`, nothing is written unless that node still holds the run's lease (see `check_lease`).
    """
    with store.write() as connection:
        check_lease(connection, run_id, lease_owner)
        row = connection.execute(sa.select(runbook_runs).where(runbook_runs.c.id == run_id)).mappings().one()
        connection.execute(
            runbook_runs.update()
            .where(runbook_runs.c.id == run_id)
            .values(status=state, detail=detail, finished_at=now, concurrency_key=None, lease_until=None)
        )
        # A finished run waits for nobody: an answer that comes after the end is rejected.
        connection.execute(
            approvals.update()
            .where(approvals.c.run_id == run_id, approvals.c.status == "pending")
            .values(status="expired", decided_at=now)
        )
        if row["incident_id"] is not None:
            add_timeline(
                connection,
                row["incident_id"],
                now,
                "runbook.finished",
                "irules",
                f"Runbook {row['runbook_id']} run {run_id} {state}: {detail}",
                {"run": run_id, "runbook": row["runbook_id"], "state": state},
            )


# ---------------------------------------------------------------- journal


def outcome_to_json(outcome: StepOutcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return _jsonable(
        {
            "ok": outcome.ok,
            "output": outcome.output,
            "value": outcome.value,
            "labels": outcome.labels,
            "exit_code": outcome.exit_code,
            "detail": outcome.detail,
            "operation": outcome.operation,
            "retryable": outcome.retryable,
        }
    )


def outcome_from_json(data: dict[str, Any] | None) -> StepOutcome | None:
    if data is None:
        return None
    return StepOutcome(
        ok=bool(data.get("ok")),
        output=data.get("output") or "",
        value=data.get("value"),
        labels=dict(data.get("labels") or {}),
        exit_code=data.get("exit_code"),
        detail=data.get("detail") or "",
        operation=dict(data.get("operation") or {}),
        retryable=bool(data.get("retryable", True)),
    )


class StoreJournal:
    """The executor's journal in the store, with a timeline entry for each step that starts, waits or ends.

    With `lease_owner`, every write raises `LeaseLost` and writes nothing once that
    node no longer holds the run's lease. Without it (None), writes are not fenced.
    """

    def __init__(self, store: Store, run_id: int, *, lease_owner: str | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.lease_owner = lease_owner
        with store.read() as connection:
            row = connection.execute(sa.select(runbook_runs).where(runbook_runs.c.id == run_id)).mappings().one()
        self.incident_id = row["incident_id"]
        self.runbook_id = row["runbook_id"]

    async def snapshot(self) -> dict[str, StepRecord]:
        return await anyio.to_thread.run_sync(self._snapshot)

    def _snapshot(self) -> dict[str, StepRecord]:
        with self.store.read() as connection:
            rows = connection.execute(sa.select(step_runs).where(step_runs.c.run_id == self.run_id)).mappings().all()
        return {
            row["name"]: StepRecord(
                name=row["name"],
                state=row["state"],
                attempt=row["attempt"],
                operation=dict(row["operation"]),
                outcome=outcome_from_json(row["outcome"]),
                detail=row["detail"] or "",
                at=row["updated_at"],
            )
            for row in rows
        }

    async def record(
        self,
        name: str,
        state: str,
        *,
        attempt: int,
        at: datetime.datetime,
        outcome: StepOutcome | None = None,
        operation: dict[str, Any] | None = None,
        detail: str = "",
    ) -> None:
        await anyio.to_thread.run_sync(lambda: self._record(name, state, attempt, at, outcome, operation, detail))

    def _record(
        self,
        name: str,
        state: str,
        attempt: int,
        at: datetime.datetime,
        outcome: StepOutcome | None,
        operation: dict[str, Any] | None,
        detail: str,
    ) -> None:
        with self.store.write() as connection:
            check_lease(connection, self.run_id, self.lease_owner)
            existing = connection.execute(
                sa.select(step_runs.c.id, step_runs.c.operation).where(
                    step_runs.c.run_id == self.run_id, step_runs.c.name == name
                )
            ).first()
            values: dict[str, Any] = {"state": state, "attempt": attempt, "detail": detail[:2000] or None, "updated_at": at}
            if outcome is not None:
                values["outcome"] = outcome_to_json(outcome)
            if operation is not None:
                values["operation"] = _jsonable(operation)
            if existing is None:
                values.setdefault("operation", {})
                connection.execute(step_runs.insert().values(run_id=self.run_id, name=name, **values))
            else:
                connection.execute(step_runs.update().where(step_runs.c.id == existing.id).values(**values))
            if state in (WAITING, INTERRUPTED):
                connection.execute(runbook_runs.update().where(runbook_runs.c.id == self.run_id).values(status="waiting"))
            elif state == RUNNING:
                connection.execute(runbook_runs.update().where(runbook_runs.c.id == self.run_id).values(status="running"))
            if self.incident_id is not None and state != "pending":
                message, data = self._timeline_text(
                    name, state, attempt, outcome, operation or (existing.operation if existing else {}), detail
                )
                add_timeline(connection, self.incident_id, at, f"step.{state}", "irules", message, data)

    def _timeline_text(
        self, name: str, state: str, attempt: int, outcome: StepOutcome | None, operation: dict[str, Any], detail: str
    ) -> tuple[str, dict[str, Any]]:
        what = f"Runbook {self.runbook_id} run {self.run_id}: step {name}"
        data: dict[str, Any] = {"run": self.run_id, "step": name, "attempt": attempt, "operation": _jsonable(operation)}
        if state == RUNNING:
            message = f"{what} started" + (f" (attempt {attempt})" if attempt > 1 else "")
            if "argv" in operation:
                message += ": " + " ".join(json.dumps(part) if " " in part or not part else part for part in operation["argv"])
        elif state == WAITING:
            message = f"{what} waits: {detail}" if detail else f"{what} waits for a decision"
        elif state in (SUCCEEDED, SKIPPED):
            message = f"{what} {state}" + (f": {detail}" if detail else "")
        else:
            message = f"{what} {state}" + (f": {detail}" if detail else "")
        if outcome is not None:
            data["exit_code"] = outcome.exit_code
            data["output"] = outcome.output[:TIMELINE_OUTPUT]
            data["ok"] = outcome.ok
        return message, data

    async def finish(self, state: str, detail: str, *, at: datetime.datetime) -> None:
        await anyio.to_thread.run_sync(
            lambda: finish_run(self.store, self.run_id, state, detail, at, lease_owner=self.lease_owner)
        )


# ---------------------------------------------------------------- approvals and decisions


def request(
    store: Store,
    run_id: int,
    step: str,
    kind: str,
    team: str | None,
    operation: dict[str, Any],
    now: datetime.datetime,
    timeout_s: float | None,
    *,
    lease_owner: str | None = None,
) -> int:
    """Ask for an approval or a decision about `step`, once; return the request's id.

    With `lease_owner`, nothing is written unless that node still holds the run's lease (see `check_lease`).
    """
    with store.write() as connection:
        check_lease(connection, run_id, lease_owner)
        return request_in(connection, run_id, step, kind, team, operation, now, timeout_s)[0]


def request_in(
    connection: sa.Connection,
    run_id: int,
    step: str,
    kind: str,
    team: str | None,
    operation: dict[str, Any],
    now: datetime.datetime,
    timeout_s: float | None,
) -> tuple[int, bool]:
    """Ask for an approval or a decision in the caller's transaction; return the request's id and whether it is new.

    A run that resumes after a restart finds its earlier request, so people are asked once.
    """
    found = connection.execute(
        sa.select(approvals.c.id).where(approvals.c.run_id == run_id, approvals.c.step == step, approvals.c.kind == kind)
    ).scalar()
    if found is not None:
        return found, False
    request_id = connection.execute(
        approvals.insert().values(
            run_id=run_id,
            step=step,
            team=team,
            kind=kind,
            status="pending",
            operation=_jsonable(operation),
            requested_at=now,
            timeout_at=None if timeout_s is None else now + datetime.timedelta(seconds=timeout_s),
        )
    ).inserted_primary_key[0]
    return request_id, True


def expire_if_due(store: Store, request_id: int, now: datetime.datetime, *, lease_owner: str | None = None) -> bool:
    """Mark a pending approval `timed_out` when its timeout has passed, so a late decision is rejected; return True if so.

    With `lease_owner`, nothing is written unless that node still holds the run's lease (see `check_lease`).
    """
    with store.write() as connection:
        if lease_owner is not None:
            run_id = connection.execute(sa.select(approvals.c.run_id).where(approvals.c.id == request_id)).scalar_one()
            check_lease(connection, run_id, lease_owner)
        changed = connection.execute(
            approvals.update()
            .where(approvals.c.id == request_id, approvals.c.status == "pending", approvals.c.timeout_at <= now)
            .values(status="timed_out", decided_at=now)
        ).rowcount
    return bool(changed)


def answer_of(store: Store, request_id: int) -> Decision | None:
    """Return the decision given on a request, or None while it is pending."""
    with store.read() as connection:
        row = connection.execute(sa.select(approvals).where(approvals.c.id == request_id)).mappings().one()
    if row["status"] == "pending":
        return None
    return Decision(row["status"], row["decided_by"] or "", row["note"] or "")


def decide(
    store: Store, run_id: int, step: str, answer: str, actor: str, now: datetime.datetime, note: str | None = None
) -> dict[str, Any]:
    """Answer the pending approval or decision of a step: granted or denied, or retry, skip or fail."""
    if answer not in DECISION_ANSWERS:
        raise IncidentError(f"invalid answer {answer!r}; use one of {', '.join(sorted(DECISION_ANSWERS))}", status=400)
    with store.write() as connection:
        return decide_in(connection, run_id, step, answer, actor, now, note)


def decide_in(
    connection: sa.Connection, run_id: int, step: str, answer: str, actor: str, now: datetime.datetime, note: str | None = None
) -> dict[str, Any]:
    """Record the answer as `decide` does, in the caller's transaction, so that it commits with the caller's writes."""
    row = (
        connection.execute(
            sa.select(approvals)
            .where(approvals.c.run_id == run_id, approvals.c.step == step, approvals.c.status == "pending")
            .order_by(approvals.c.id.desc())
        )
        .mappings()
        .first()
    )
    if row is None:
        raise IncidentError(f"step {step!r} of run {run_id} waits for no approval or decision", status=404)
    if row["timeout_at"] is not None and row["timeout_at"] <= now:
        raise IncidentError(
            f"the approval of step {step!r} of run {run_id} timed out at {_iso(row['timeout_at'])}; the step fails",
            status=409,
        )
    allowed = ("granted", "denied") if row["kind"] == APPROVAL else ("retry", "skip", "fail")
    if answer not in allowed:
        raise IncidentError(f"step {step!r} of run {run_id} waits for a {row['kind']}: answer {' or '.join(allowed)}", status=400)
    connection.execute(
        approvals.update().where(approvals.c.id == row["id"]).values(status=answer, decided_by=actor, decided_at=now, note=note)
    )
    run = connection.execute(
        sa.select(runbook_runs.c.incident_id, runbook_runs.c.runbook_id).where(runbook_runs.c.id == run_id)
    ).one()
    if run.incident_id is not None:
        verb = {"granted": "approved", "denied": "denied"}.get(answer, f"decided {answer} for")
        add_timeline(
            connection,
            run.incident_id,
            now,
            f"step.{row['kind']}",
            actor,
            f"{actor} {verb} step {step} of runbook {run.runbook_id} run {run_id}" + (f": {note}" if note else ""),
            {"run": run_id, "step": step, "answer": answer, "operation": row["operation"]},
        )
    return {**_approval_json(dict(row)), "status": answer, "decided_by": actor, "decided_at": _iso(now)}


def decide_by_id(store: Store, request_id: int, granted: bool, actor: str, now: datetime.datetime) -> dict[str, Any]:
    """Grant or deny the pending approval `request_id`, as a Slack button does."""
    with store.read() as connection:
        row = connection.execute(sa.select(approvals.c.run_id, approvals.c.step).where(approvals.c.id == request_id)).first()
    if row is None:
        raise IncidentError(f"approval {request_id} not found", status=404)
    return decide(store, row.run_id, row.step, "granted" if granted else "denied", actor, now)


def _approval_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "run": row["run_id"],
        "step": row["step"],
        "team": row["team"],
        "kind": row["kind"],
        "status": row["status"],
        "operation": row["operation"],
        "requested_at": _iso(row["requested_at"]),
        "timeout_at": _iso(row["timeout_at"]),
        "decided_by": row["decided_by"],
        "decided_at": _iso(row["decided_at"]),
    }


# ---------------------------------------------------------------- reading


def list_runs(store: Store, *, incident: str | None = None, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    query = (
        sa.select(runbook_runs, incidents.c.key.label("incident_key"))
        .select_from(runbook_runs.outerjoin(incidents, runbook_runs.c.incident_id == incidents.c.id))
        .order_by(runbook_runs.c.id.desc())
        .limit(limit)
    )
    if incident is not None:
        query = query.where(incidents.c.key == incident)
    if status is not None:
        query = query.where(runbook_runs.c.status == status)
    with store.read() as connection:
        return [_run_json(dict(row)) for row in connection.execute(query).mappings()]


def show_run(store: Store, run_id: int) -> dict[str, Any]:
    with store.read() as connection:
        row = (
            connection.execute(
                sa.select(runbook_runs, incidents.c.key.label("incident_key"))
                .select_from(runbook_runs.outerjoin(incidents, runbook_runs.c.incident_id == incidents.c.id))
                .where(runbook_runs.c.id == run_id)
            )
            .mappings()
            .first()
        )
        if row is None:
            raise IncidentError(f"run {run_id} not found", status=404)
        steps = connection.execute(sa.select(step_runs).where(step_runs.c.run_id == run_id).order_by(step_runs.c.id)).mappings()
        asks = connection.execute(sa.select(approvals).where(approvals.c.run_id == run_id).order_by(approvals.c.id)).mappings()
        result = _run_json(dict(row))
        result["steps"] = [
            {
                "name": step["name"],
                "state": step["state"],
                "attempt": step["attempt"],
                "operation": step["operation"],
                "outcome": step["outcome"],
                "detail": step["detail"],
                "updated_at": _iso(step["updated_at"]),
            }
            for step in steps
        ]
        result["approvals"] = [_approval_json(dict(item)) for item in asks]
    return result


def _run_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "runbook": row["runbook_id"],
        "incident": row.get("incident_key"),
        "status": row["status"],
        "trigger": row["trigger"],
        "requested_by": row["requested_by"],
        "created_at": _iso(row["created_at"]),
        "deadline_at": _iso(row["deadline_at"]),
        "finished_at": _iso(row["finished_at"]),
        "detail": row["detail"],
        "auto_approve": bool(row.get("auto_approve")),
    }


def _jsonable(value: Any) -> Any:
    """Return `value` with datetimes as ISO text, so it can be stored as JSON."""
    return json.loads(
        json.dumps(value, default=lambda item: item.isoformat() if isinstance(item, datetime.datetime) else str(item))
    )


__all__ = [
    "APPROVAL",
    "DECISION",
    "FAILED",
    "LeaseLost",
    "RunRefused",
    "StoreJournal",
    "answer_of",
    "check_lease",
    "decide",
    "finish_run",
    "list_runs",
    "request",
    "show_run",
    "start_run",
]
