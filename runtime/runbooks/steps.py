"""The step kinds of runbooks, performed for one run of the executor, and running a stored run to its end.

`prepare` renders a step into its exact operation (a JSON document) and
`execute` performs exactly that document, so what a person approves is what
runs. Programs run through `runtime.runbooks.process` (argv only, never a
shell); HTTP requests and Prometheus queries go through httpx; `notify`
queues messages in the outbox; `set` and `report` change the incident and
its timeline; approvals and decisions are rows that people answer.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import sqlalchemy as sa

from compiler import ir
from runtime import incidents as incident_ops
from runtime.notify.render import TemplateFailed, render_text
from runtime.policy import Policy
from runtime.runbooks import process, runs
from runtime.runbooks.model import FAIL, GRANTED, TIMED_OUT, Clock, Decision, StepOutcome, StepRecord
from runtime.runbooks.operations import auto_approvable, operation_text, render_operation, template_values
from runtime.store import Store
from runtime.store.schema import incidents, runbook_runs

log = logging.getLogger("irules.runbooks")

# Request and response bodies kept per step.
BODY_LIMIT = 64 * 1024
DEFAULT_STEP_TIMEOUT_S = 300.0
ANSWER_POLL_S = 0.2


@dataclass(slots=True)
class RunnerSettings:
    """Settings for steps that reach outside: the Prometheus URL, extra environment for programs, the working folder."""

    prometheus_url: str | None = None
    environment: tuple[str, ...] = ()
    cwd: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StoreRunner:
    """Performs the steps of one stored run.

    With `lease_owner`, the runner's writes (queued messages, timeline notes,
    approval and decision requests) raise `runs.LeaseLost` and write nothing
    once that node no longer holds the run's lease. None means no lease.
    """

    def __init__(
        self,
        store: Store,
        policy: Policy,
        run_id: int,
        clock: Clock,
        client: httpx.AsyncClient,
        settings: RunnerSettings | None = None,
        *,
        lease_owner: str | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.run_id = run_id
        self.lease_owner = lease_owner
        self.clock = clock
        self.client = client
        self.settings = settings or RunnerSettings()
        self.actions = {action.name: action for action in policy.ruleset.actions}
        with store.read() as connection:
            row = connection.execute(sa.select(runbook_runs).where(runbook_runs.c.id == run_id)).mappings().one()
        self.incident_id = row["incident_id"]
        self.requested_by = row["requested_by"]
        self.runbook_id = row["runbook_id"]
        self.auto_approve = bool(row["auto_approve"])

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """Open a write transaction that raises `runs.LeaseLost` unless this node still holds the run's lease."""
        with self.store.write() as connection:
            runs.check_lease(connection, self.run_id, self.lease_owner)
            yield connection

    # ------------------------------------------------------------ prepare

    async def prepare(self, step: ir.Step, values: Mapping[str, Any]) -> dict[str, Any]:
        values = template_values(values)
        operation = render_operation(step, self.actions, values)
        if operation["kind"] == "report":
            operation["values"] = _summary(values)
        return operation

    # ------------------------------------------------------------ execute

    async def execute(self, step: ir.Step, operation: dict[str, Any]) -> StepOutcome:
        kind = operation.get("kind")
        if kind == "run":
            timeout = step.timeout_s or DEFAULT_STEP_TIMEOUT_S
            extras = [*self.settings.environment]
            outcome = await process.run_process(
                operation["argv"],
                timeout_s=timeout,
                env_allowlist=(*process.DEFAULT_ENV, *extras),
                cwd=self.settings.cwd,
                exit_codes=operation.get("exit_codes") or (0,),
            )
            outcome.value = _json_value(outcome.output)
            return outcome
        if kind == "http":
            return await self._http(operation, step)
        if kind == "query":
            return await self._query(operation, step)
        if kind == "wait":
            await self.clock.sleep(operation["seconds"])
            return StepOutcome(ok=True, detail=f"waited {operation['seconds']:g}s", operation=operation)
        if kind == "notify":
            return await anyio.to_thread.run_sync(self._notify, operation, step)
        if kind in ("report", "assist", "set"):
            return await anyio.to_thread.run_sync(self._note, operation, step)
        return StepOutcome(ok=False, detail=f"cannot execute a {kind} operation", operation=operation, retryable=False)

    async def _http(self, operation: dict[str, Any], step: ir.Step) -> StepOutcome:
        try:
            response = await self.client.request(
                operation["method"],
                operation["url"],
                headers=operation.get("headers") or {},
                content=(operation.get("body") or "").encode() or None,
                timeout=step.timeout_s or DEFAULT_STEP_TIMEOUT_S,
            )
        except httpx.HTTPError as error:
            return StepOutcome(ok=False, detail=f"request failed: {type(error).__name__}", operation=operation)
        expected = operation.get("expect")
        ok = response.status_code == expected if expected else response.is_success
        text = response.content[:BODY_LIMIT].decode("utf-8", "replace")
        detail = f"HTTP {response.status_code}" + ("" if ok else f", expected {expected or '2xx'}")
        return StepOutcome(ok=ok, output=text, value=response.status_code, detail=detail, operation=operation)

    async def _query(self, operation: dict[str, Any], step: ir.Step) -> StepOutcome:
        base = self.settings.prometheus_url
        if not base:
            return StepOutcome(
                ok=False, detail="no Prometheus URL configured (IRULES_PROMETHEUS_URL)", operation=operation, retryable=False
            )
        try:
            response = await self.client.get(
                base.rstrip("/") + "/api/v1/query",
                params={"query": operation["query"]},
                timeout=step.timeout_s or DEFAULT_STEP_TIMEOUT_S,
            )
            document = response.json()
        except (httpx.HTTPError, ValueError) as error:
            return StepOutcome(ok=False, detail=f"query failed: {type(error).__name__}", operation=operation)
        if response.status_code != 200 or document.get("status") != "success":
            return StepOutcome(
                ok=False,
                detail=f"Prometheus answered HTTP {response.status_code}: {str(document.get('error', ''))[:200]}",
                operation=operation,
            )
        result = document.get("data", {}).get("result") or []
        first = result[0] if isinstance(result, list) and result else None
        value = None
        labels: dict[str, str] = {}
        if isinstance(first, dict):
            labels = {str(name): str(item) for name, item in (first.get("metric") or {}).items()}
            sample = first.get("value") or [None, None]
            try:
                value = float(sample[1])
            except (TypeError, ValueError, IndexError):
                value = None
        return StepOutcome(
            ok=True,
            output=response.text[:BODY_LIMIT],
            value=value,
            labels=labels,
            detail=f"{len(result)} series",
            operation=operation,
        )

    def _notify(self, operation: dict[str, Any], step: ir.Step) -> StepOutcome:
        from runtime.notify import planner

        if self.incident_id is None:
            return StepOutcome(ok=True, detail="no incident to notify about", operation=operation)
        with self._write() as connection:
            incident = dict(connection.execute(sa.select(incidents).where(incidents.c.id == self.incident_id)).mappings().one())
            queued = planner.queue_messages(
                connection,
                self.policy,
                planner._default_renderer(),
                incident,
                operation["receiver"],
                "updated",
                self.clock.now(),
                key=f"runbook:{self.run_id}:{step.name}",
            )
        return StepOutcome(ok=True, detail=f"{queued} messages queued for {operation['receiver']}", operation=operation)

    def _note(self, operation: dict[str, Any], step: ir.Step) -> StepOutcome:
        if self.incident_id is None:
            return StepOutcome(ok=True, detail="no incident", operation=operation)
        kind = operation["kind"]
        now = self.clock.now()
        if kind in ("set", "assist"):
            # NOTE: these write through `runtime.incidents` and the assistant, in transactions of their own,
            # so the lease is checked just before. A node that stalls between this check and the write
            # can still apply the change once after another node took the run over.
            with self._write():
                pass
        if kind == "set":
            return self._set(operation, step, now)
        if kind == "assist":
            return self._assist(operation, now)
        text = self._report_text(operation)
        message = f"Report {operation['template']}: {text}"
        with self._write() as connection:
            incident_ops.add_timeline(
                connection, self.incident_id, now, f"runbook.{kind}", f"runbook:{self.run_id}", message, {"step": step.name}
            )
        return StepOutcome(ok=True, output=message, detail=message[:200], operation=operation)

    def _assist(self, operation: dict[str, Any], now: datetime.datetime) -> StepOutcome:
        """Diagnose the incident with the built-in local provider; its answer and verdicts go onto the timeline.

        The step starts nothing itself: recommendations are listed for people, because a
        runbook that starts runbooks could loop.
        """
        from runtime.triage.assist.local import LocalProvider
        from runtime.triage.assist.model import AssistError
        from runtime.triage.assist.service import assist

        focus = operation["focus"] if operation["focus"] in ("root-cause", "impact", "remediation") else "root-cause"
        try:
            result = assist(self.store, self.policy, str(self.incident_id), focus, LocalProvider(), f"runbook:{self.run_id}", now)
        except (AssistError, incident_ops.IncidentError) as error:
            return StepOutcome(ok=False, detail=f"the assisted diagnosis failed: {error}", operation=operation, retryable=False)
        lines = [result.answer.summary, *(f"- {item.title} ({item.confidence:.2f})" for item in result.answer.hypotheses)]
        return StepOutcome(
            ok=True,
            output="\n".join(lines),
            value=result.to_json(),
            detail=f"{len(result.answer.hypotheses)} hypotheses, {len(result.decisions)} recommendations",
            operation=operation,
        )

    def _report_text(self, operation: dict[str, Any]) -> str:
        template = next((item for item in self.policy.ruleset.templates if item.name == operation["template"]), None)
        if template is None:
            return "(no such template)"
        fields = template.locales.get(self.policy.ruleset.settings.locale) or template.locales.get("en") or {}
        source = fields.get("summary") or fields.get("text") or fields.get("body") or ""
        try:
            return render_text(source, template_values(operation.get("values") or {}))
        except TemplateFailed as error:
            return f"(the template failed: {error})"

    def _set(self, operation: dict[str, Any], step: ir.Step, now: datetime.datetime) -> StepOutcome:
        arguments = operation["args"]
        field_name = arguments[0].removeprefix("incident.") if arguments else ""
        value = arguments[1] if len(arguments) > 1 else ""
        change = {
            "status": incident_ops.Change(status=value),
            "severity": incident_ops.Change(severity=value),
            "assignee": incident_ops.Change(assignee=value),
        }.get(field_name)
        if change is None:
            return StepOutcome(ok=False, detail=f"cannot set incident.{field_name}", operation=operation, retryable=False)
        with self.store.read() as connection:
            key = connection.execute(sa.select(incidents.c.key).where(incidents.c.id == self.incident_id)).scalar_one()
        try:
            incident_ops.update(self.store, key, change, f"runbook:{self.run_id}", now)
        except incident_ops.IncidentError as error:
            return StepOutcome(ok=False, detail=str(error), operation=operation, retryable=False)
        return StepOutcome(ok=True, detail=f"incident.{field_name} = {value}", operation=operation)

    # ------------------------------------------------------------ people

    async def approve(self, step: ir.Step, operation: dict[str, Any], team: str, timeout_s: float | None) -> Decision:
        now = self.clock.now()
        request_id = await anyio.to_thread.run_sync(lambda: self._ask(step, operation, team, now, timeout_s))
        try:
            return await self._wait(request_id, TIMED_OUT)
        except anyio.get_cancelled_exc_class():
            # The executor cancels the wait when the approval's timeout passes. Marking the
            # request then makes a late answer fail instead of being recorded as granted.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    lambda: runs.expire_if_due(self.store, request_id, self.clock.now(), lease_owner=self.lease_owner)
                )
            raise

    def _ask(self, step: ir.Step, operation: dict[str, Any], team: str, now: datetime.datetime, timeout_s: float | None) -> int:
        """Store the approval request and, the first time, grant it under `--auto-approve-safe` or notify `team`."""
        action = self.actions.get(step.action or "") if step.kind == "call" else None
        automatic = self.auto_approve and auto_approvable(step, action)
        with self._write() as connection:
            request_id, new = runs.request_in(connection, self.run_id, step.name, runs.APPROVAL, team, operation, now, timeout_s)
            if new and automatic:
                # In the request's transaction, which `_write` fences: a node that lost the run's
                # lease grants nothing.
                actor = f"{self.requested_by} (--auto-approve-safe)"
                runs.decide_in(connection, self.run_id, step.name, GRANTED, actor, now, "read-only or low risk")
            elif new:
                self._notify_approvers(connection, request_id, step, operation, team, now, timeout_s)
        if new and automatic:
            log.info("run %d: step %s approved by --auto-approve-safe", self.run_id, step.name)
        else:
            log.info("run %d: step %s waits for approval from %s", self.run_id, step.name, team)
        return request_id

    def _notify_approvers(
        self,
        connection: sa.Connection,
        request_id: int,
        step: ir.Step,
        operation: dict[str, Any],
        team: str,
        now: datetime.datetime,
        timeout_s: float | None,
    ) -> None:
        """Queue the approval request to the team's channels, with the exact operation and how to decide."""
        from runtime.notify import planner

        if self.incident_id is None:
            return
        if team not in self.policy.receivers:
            log.warning("run %d: step %s: approving team %s has no channels to ask on", self.run_id, step.name, team)
            return
        incident = dict(connection.execute(sa.select(incidents).where(incidents.c.id == self.incident_id)).mappings().one())
        approval = {
            "id": request_id,
            "run": self.run_id,
            "runbook": self.runbook_id,
            "step": step.name,
            "team": team,
            "operation": operation_text(operation),
            "timeout_at": None if timeout_s is None else now + datetime.timedelta(seconds=timeout_s),
            "approve_command": f"irules approve {self.run_id} {step.name}",
            "deny_command": f"irules deny {self.run_id} {step.name}",
        }
        planner.queue_messages(
            connection,
            self.policy,
            planner._default_renderer(),
            incident,
            team,
            "approval",
            now,
            key=f"approval:{request_id}",
            approval=approval,
        )

    async def decide(self, step: ir.Step, record: StepRecord) -> Decision:
        request_id = await anyio.to_thread.run_sync(
            lambda: runs.request(
                self.store,
                self.run_id,
                step.name,
                runs.DECISION,
                None,
                record.operation,
                self.clock.now(),
                None,
                lease_owner=self.lease_owner,
            )
        )
        log.warning("run %d: step %s was running when the daemon stopped; it waits for a decision", self.run_id, step.name)
        return await self._wait(request_id, FAIL)

    async def _wait(self, request_id: int, _default: str) -> Decision:
        while True:
            decision = await anyio.to_thread.run_sync(runs.answer_of, self.store, request_id)
            if decision is not None:
                return decision
            await self.clock.sleep(ANSWER_POLL_S)


def _summary(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return the values a report reads, without step outputs that may be large."""
    return {name: value for name, value in values.items() if name != "steps"}


def _json_value(output: str) -> Any:
    """Return a program's output parsed as JSON when it is JSON, so later steps can read its fields."""
    import json

    text = output.strip()
    if not text.startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


async def run_stored(
    store: Store,
    policy: Policy,
    run_id: int,
    clock: Clock,
    client: httpx.AsyncClient,
    settings: RunnerSettings | None = None,
    *,
    lease_owner: str | None = None,
) -> Any:
    """Run or resume the stored run `run_id` to its end and return the executor's result.

    With `lease_owner` (the daemon's node id), every write of the run's progress
    raises `runs.LeaseLost` and writes nothing once that node no longer holds the
    run's lease. None runs without a lease, as tests and local runs do.
    """
    from runtime.runbooks.executor import execute_run

    with store.read() as connection:
        row = connection.execute(sa.select(runbook_runs).where(runbook_runs.c.id == run_id)).mappings().one()
    runbook = next((item for item in policy.ruleset.runbooks if item.id == row["runbook_id"]), None)
    if runbook is None:
        from runtime.triage.assist.service import rebuild_action_runbook

        runbook = rebuild_action_runbook(policy.ruleset, row["runbook_id"], dict(row["values"]))
    if runbook is None:
        detail = f"runbook {row['runbook_id']} is no longer in the rules"
        await anyio.to_thread.run_sync(
            lambda: runs.finish_run(store, run_id, "failed", detail, clock.now(), lease_owner=lease_owner)
        )
        return None
    runner = StoreRunner(store, policy, run_id, clock, client, settings, lease_owner=lease_owner)
    journal = runs.StoreJournal(store, run_id, lease_owner=lease_owner)
    return await execute_run(runbook, runner, journal, clock, dict(row["values"]), started_at=row["created_at"])
