"""The runbook executor: runs one runbook's step graph for one incident.

Order. A step starts once every step it depends on has succeeded or was
skipped, so independent branches run concurrently in one task group. A step
whose `when` is false is SKIPPED and leaves no `steps.NAME` values, so later
conditions and templates that read it see a missing value.

Attempts. `prepare` renders a step's operation once. Every attempt runs
exactly that operation inside `clock.deadline_scope(step.timeout_s)`, and a
timeout fails the attempt with the detail "timed out after 30s". A failed
attempt is retried only when the step has `retry`, is read-only or
idempotent, and the outcome is retryable. The wait before retry k is
`backoff_s` (default 1 s) times 2**(k - 1).

Approval. A step with `approval_team`, or an `approve` step, is journaled
WAITING together with its operation, and only then is the team asked. A
granted approval runs the recorded operation. A denial or a timeout fails the
step ("denied by alice", "approval timed out after 1h"). An `approve` step
never reaches `execute`: the approval is its whole operation.

Failure. After the first failure, only failure-path steps start, and steps
already running finish. When the failed step names `on_failure` and its
operation ran, the compensation step starts and its `when` may read the
failed step's values. The failed step becomes COMPENSATED once the
compensation succeeds. A step whose approval was refused, or whose operation
could not be prepared, changed nothing, so its compensation does not run. At
the end, steps that never started become CANCELLED, except failure-path steps
that no failure led to, which become SKIPPED. The run fails.

Deadline. When `runbook.timeout_s` passes, running steps are cancelled, every
unfinished step becomes CANCELLED, and the run ends CANCELLED.

Resume. `journal.snapshot()` returns the states written before a crash.
Finished steps are not run again, and their outcomes feed `steps`. A step
that was RUNNING is run again when it is read-only or idempotent (with the
recorded operation, as the next attempt). A mutating one becomes INTERRUPTED
and waits for `runner.decide`: retry, skip or fail. A step that was WAITING
for approval keeps waiting, for what remains of its timeout. No mutating,
non-idempotent step starts a second time without a person's decision.

Journal. Every change of a step's state is written, and the write awaited,
before the executor acts on it. The protocol is async so that a journal
backed by the store can write in a worker thread without blocking the event
loop and without losing that order. The writes are shielded from
cancellation, so a step that finished as the deadline passed is still
recorded as finished. A write that raises (the store's journal raises
`LeaseLost` once another node took the run over) ends the run's task group,
so the run stops without writing its end.
"""

from __future__ import annotations

import copy
import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc

from compiler import ir
from compiler.evaluate import condition_holds
from compiler.transform import duration_text as format_duration
from runtime.faults import crash_point
from runtime.runbooks.graph import StepGraph, build_step_graph
from runtime.runbooks.model import (
    CANCELLED,
    COMPENSATED,
    DENIED,
    FAIL,
    FAILED,
    FINISHED_STATES,
    GRANTED,
    INTERRUPTED,
    PENDING,
    RETRY,
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_SUCCEEDED,
    RUNNING,
    SKIP,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    WAITING,
    Clock,
    Decision,
    StepOutcome,
    StepRecord,
    StepRejected,
)

__all__ = [
    "InMemoryJournal",
    "Journal",
    "Operation",
    "RunResult",
    "StepRunner",
    "execute_run",
    "format_duration",
]

log = logging.getLogger("irules.runbooks")

# The exact operation of a step, as `prepare` renders it: what approvers see, what the
# journal stores and what `execute` runs. It must be JSON-serializable.
Operation = dict[str, Any]

DEFAULT_BACKOFF_S = 1.0
APPROVE = "approve"
# States of a dependency that let the steps after it start.
_SATISFIED = frozenset({SUCCEEDED, SKIPPED})
_UNSUCCESSFUL = frozenset({FAILED, COMPENSATED, CANCELLED})


class StepRunner(Protocol):
    """The component that performs steps: it renders their operations, runs them, and requests decisions from people."""

    async def prepare(self, step: ir.Step, values: Mapping[str, Any]) -> Operation:
        """Render the step's templates into the exact operation it performs; raise `StepRejected` when that fails."""
        ...

    async def execute(self, step: ir.Step, operation: Operation) -> StepOutcome:
        """Perform `operation`, the value `prepare` returned, once; a failed operation is an outcome, not an exception."""
        ...

    async def approve(self, step: ir.Step, operation: Operation, team: str, timeout_s: float | None) -> Decision:
        """Ask a person of `team` to approve `operation` and wait for GRANTED, DENIED or TIMED_OUT.

        `timeout_s` is the number of seconds left before the request times out.
        The executor cancels the wait itself when they pass, so a runner need
        not enforce it.
        """
        ...

    async def decide(self, step: ir.Step, record: StepRecord) -> Decision:
        """Ask a person what to do with a step that was running when the run stopped, and wait for RETRY, SKIP or FAIL."""
        ...


class Journal(Protocol):
    """The storage of a run's step states: the store in the daemon, memory in tests."""

    async def snapshot(self) -> dict[str, StepRecord]:
        """Return the last record of every step written so far, empty for a new run."""
        ...

    async def record(
        self,
        name: str,
        state: str,
        *,
        attempt: int,
        at: datetime.datetime,
        outcome: StepOutcome | None = None,
        operation: Operation | None = None,
        detail: str = "",
    ) -> None:
        """Write a step's new state; `operation` None keeps the recorded operation, and `outcome` replaces the old one."""
        ...

    async def finish(self, state: str, detail: str, *, at: datetime.datetime) -> None:
        """Write the run's final state."""
        ...


class InMemoryJournal:
    """A journal in memory, for tests and benchmarks; `history` lists every record in the order written."""

    def __init__(self, records: Mapping[str, StepRecord] | None = None) -> None:
        self.records: dict[str, StepRecord] = dict(records or {})
        self.history: list[StepRecord] = []
        self.result: tuple[str, str] | None = None

    async def snapshot(self) -> dict[str, StepRecord]:
        return dict(self.records)

    async def record(
        self,
        name: str,
        state: str,
        *,
        attempt: int,
        at: datetime.datetime,
        outcome: StepOutcome | None = None,
        operation: Operation | None = None,
        detail: str = "",
    ) -> None:
        # A copy, as a store would serialize it: a later change to the runner's dict must not change the record.
        kept = copy.deepcopy(operation) if operation is not None else _recorded_operation(self.records.get(name))
        entry = StepRecord(name, state, attempt, kept, outcome, detail, at)
        self.records[name] = entry
        self.history.append(entry)

    async def finish(self, state: str, detail: str, *, at: datetime.datetime) -> None:
        self.result = (state, detail)


@dataclass(frozen=True, slots=True)
class RunResult:
    """The final state of a run, its detail, and the last record of every step."""

    state: str
    detail: str
    steps: dict[str, StepRecord]


async def execute_run(
    runbook: ir.Runbook,
    runner: StepRunner,
    journal: Journal,
    clock: Clock,
    values: Mapping[str, Any],
    *,
    started_at: datetime.datetime | None = None,
) -> RunResult:
    """Run the step graph of `runbook`, or resume it from what `journal` recorded, and return how it ended.

    `values` is what conditions and templates read (`labels`, `annotations`,
    `alert`, `incident`, `service`); the executor adds `steps`. `started_at`
    is when the run first started: a resumed run gets only what remains of
    `runbook.timeout_s`.

    Raises:
        ValueError: the runbook's step graph is invalid, or the journal has a
            step the runbook lacks.
        ExceptionGroup: the runner or the journal raised, or the runner
            returned a decision of the wrong kind. The step stays RUNNING or
            WAITING in the journal, so a resumed run treats it as cut short.
    """
    run = _Run(build_step_graph(runbook), runner, journal, clock, values)
    resumed = run.restore(await journal.snapshot())
    with clock.deadline_scope(_remaining_s(runbook.timeout_s, started_at, clock.now())) as deadline:
        run.deadline = deadline
        async with anyio.create_task_group() as task_group:
            run.task_group = task_group
            await run.resume(resumed)
            run.start_ready_steps()

    # `cancel_called`, not `cancelled_caught`: a resumed run whose deadline passed before it resumed
    # starts no step, so nothing is cancelled and caught, yet the run did not succeed.
    if deadline.cancel_called:
        assert runbook.timeout_s is not None, "a run without a timeout has no deadline to pass"
        state, detail = RUN_CANCELLED, f"deadline of {format_duration(runbook.timeout_s)} passed"
    elif run.failure is not None:
        failed, reason = run.failure
        state, detail = RUN_FAILED, f"step `{failed}` failed: {reason}" if reason else f"step `{failed}` failed"
    else:
        state, detail = RUN_SUCCEEDED, "every step succeeded or was skipped"
    await run.settle(detail if state == RUN_CANCELLED else None)
    await journal.finish(state, detail, at=clock.now())
    log.log(logging.INFO if state == RUN_SUCCEEDED else logging.WARNING, "runbook %s: run %s: %s", runbook.id, state, detail)
    return RunResult(state, detail, dict(run.records))


@dataclass(slots=True)
class _Ending:
    """The end of one step's work, before it is journaled.

    `ran` is true when the operation started (for an `approve` step, the
    approval wait). Only then does the step's compensation apply.
    """

    state: str
    attempt: int
    outcome: StepOutcome | None = None
    detail: str = ""
    ran: bool = False


class _Run:
    """The state of one run while it executes: the journal's records mirrored in memory, and what started."""

    def __init__(self, graph: StepGraph, runner: StepRunner, journal: Journal, clock: Clock, values: Mapping[str, Any]) -> None:
        self.graph = graph
        self.runner = runner
        self.journal = journal
        self.clock = clock
        self.values = values
        self.records: dict[str, StepRecord] = {}
        self.step_values: dict[str, dict[str, Any]] = {}
        self.started: set[str] = set()
        # The first step that failed, and why; after it only failure-path steps start.
        self.failure: tuple[str, str] | None = None
        # Compensation steps that are running, with the failed steps each one compensates.
        self.awaiting_compensation: dict[str, list[str]] = {}
        self.task_group: anyio.abc.TaskGroup | None = None
        self.deadline: anyio.CancelScope | None = None

    def state(self, name: str) -> str | None:
        record = self.records.get(name)
        return record.state if record is not None else None

    # ------------------------------------------------------------ resume

    def restore(self, snapshot: Mapping[str, StepRecord]) -> list[StepRecord]:
        """Take over the states of an earlier attempt at this run; return the records of steps to continue."""
        oldest = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        unfinished = []
        for record in sorted(snapshot.values(), key=lambda record: record.at or oldest):
            if record.name not in self.graph.graph:
                raise ValueError(f"the journal has step `{record.name}`, which runbook `{self.graph.runbook_id}` does not have")
            if record.state == PENDING and record.attempt == 0:
                continue
            self.records[record.name] = record
            self.started.add(record.name)
            if record.state not in FINISHED_STATES:
                unfinished.append(record)
                continue
            if record.state != SKIPPED and record.outcome is not None:
                self.step_values[record.name] = record.outcome.as_step_values()
            if record.state in _UNSUCCESSFUL:
                self._note_failure(record.name, record.detail)
        return unfinished

    async def resume(self, unfinished: list[StepRecord]) -> None:
        """Start the compensations still owed and the steps that were unfinished when the run stopped."""
        for failed, compensation in self.graph.compensated_by.items():
            record = self.records.get(failed)
            if record is None or record.state != FAILED or not _operation_ran(self.graph.step(failed), record.attempt):
                continue
            compensation_state = self.state(compensation)
            if compensation_state == SUCCEEDED:
                # The run stopped between the compensation's record and this one.
                await self._record(failed, COMPENSATED, attempt=record.attempt, outcome=record.outcome, detail=record.detail)
            elif compensation_state not in FINISHED_STATES:
                self.awaiting_compensation.setdefault(compensation, []).append(failed)
                if compensation not in self.started:
                    self._launch(compensation)
        for record in unfinished:
            self._launch(record.name, record)

    # ------------------------------------------------------------ scheduling

    def start_ready_steps(self) -> None:
        for name in self.graph.order:
            if name not in self.started and self._ready(name):
                self._launch(name)

    def _ready(self, name: str) -> bool:
        if self.graph.step(name).compensation:
            return False  # started only by the failure of a step that names it
        if self.failure is not None and name not in self.graph.failure_path:
            return False
        return all(self.state(before) in _SATISFIED for before in self.graph.predecessors(name))

    def _launch(self, name: str, resumed: StepRecord | None = None) -> None:
        assert self.task_group is not None, "steps start only inside the run's task group"
        if self.deadline is not None and self.deadline.cancel_called:
            return
        self.started.add(name)
        self.task_group.start_soon(self._run_step, name, resumed)

    async def _run_step(self, name: str, resumed: StepRecord | None) -> None:
        step = self.graph.step(name)
        if resumed is None:
            ending = await self._start(step)
        else:
            ending = await self._continue(step, resumed)
        await self._conclude(step, ending)
        self.start_ready_steps()

    # ------------------------------------------------------------ one step

    async def _start(self, step: ir.Step) -> _Ending:
        values = {**self.values, "steps": dict(self.step_values)}
        if step.when is not None and not condition_holds(step.when, values):
            return _Ending(SKIPPED, 0, detail="condition is false")
        try:
            operation = await self.runner.prepare(step, values)
        except StepRejected as error:
            return _Ending(FAILED, 0, detail=f"invalid operation: {error}")

        approval = _approval_of(step)
        if approval is None:
            return await self._attempts(step, operation, 1)
        attempt = 1 if step.kind == APPROVE else 0
        await self._record(
            step.name, WAITING, attempt=attempt, operation=operation, detail=f"waiting for approval from {approval[0]}"
        )
        return await self._approve_and_run(step, operation, waited_s=0.0)

    async def _continue(self, step: ir.Step, record: StepRecord) -> _Ending:
        if record.state == WAITING:
            waited_s = (self.clock.now() - record.at).total_seconds() if record.at is not None else 0.0
            log.info("runbook %s: step %s: waiting for approval again after a restart", self.graph.runbook_id, step.name)
            return await self._approve_and_run(step, record.operation, waited_s=waited_s)
        if record.state in (RUNNING, PENDING) and (step.read_only or step.idempotent):
            log.info(
                "runbook %s: step %s: attempt %d was cut short; running it again, which is safe because the step is %s",
                self.graph.runbook_id,
                step.name,
                record.attempt,
                "read-only" if step.read_only else "idempotent",
            )
            return await self._attempts(step, record.operation, record.attempt + 1)
        return await self._wait_for_decision(step, record)

    async def _approve_and_run(self, step: ir.Step, operation: Operation, *, waited_s: float) -> _Ending:
        approval = _approval_of(step)
        assert approval is not None, f"step `{step.name}` waits for an approval it does not need"
        team, timeout_s = approval
        remaining_s = None if timeout_s is None else max(timeout_s - waited_s, 0.0)
        decision = Decision(TIMED_OUT)
        with self.clock.deadline_scope(remaining_s):
            decision = await self.runner.approve(step, operation, team, remaining_s)

        is_approve_step = step.kind == APPROVE
        attempt = 1 if is_approve_step else 0
        if decision.answer != GRANTED:
            return _Ending(FAILED, attempt, detail=_refusal_text(step, decision, timeout_s), ran=is_approve_step)
        if is_approve_step:
            outcome = StepOutcome(ok=True, detail=f"approved by {decision.by}", operation=operation)
            return _Ending(SUCCEEDED, attempt, outcome, outcome.detail, ran=True)
        return await self._attempts(step, operation, 1)

    async def _attempts(self, step: ir.Step, operation: Operation, first: int) -> _Ending:
        # An attempt cut short by a restart counts against the budget, but the step always gets one more.
        last = max(1 + step.retry, first)
        may_retry = step.retry > 0 and (step.read_only or step.idempotent)
        attempt = first
        while True:
            await self._record(step.name, RUNNING, attempt=attempt, operation=operation)
            crash_point("step.before_start")
            outcome = await self._attempt(step, operation)
            crash_point("step.after_exit")
            if outcome.ok:
                return _Ending(SUCCEEDED, attempt, outcome, outcome.detail, ran=True)
            if not (may_retry and outcome.retryable and attempt < last):
                return _Ending(FAILED, attempt, outcome, outcome.detail, ran=True)

            delay_s = (step.backoff_s or DEFAULT_BACKOFF_S) * 2 ** (attempt - 1)
            reason = f": {outcome.detail}" if outcome.detail else ""
            detail = f"attempt {attempt} failed{reason}; retrying in {format_duration(delay_s)}"
            log.warning("runbook %s: step %s: %s", self.graph.runbook_id, step.name, detail)
            await self._record(step.name, PENDING, attempt=attempt, outcome=outcome, detail=detail)
            await self.clock.sleep(delay_s)
            attempt += 1

    async def _attempt(self, step: ir.Step, operation: Operation) -> StepOutcome:
        outcome = None
        with self.clock.deadline_scope(step.timeout_s) as scope:
            outcome = await self.runner.execute(step, operation)
        if scope.cancelled_caught:
            assert step.timeout_s is not None, "only the step's own timeout cancels an attempt"
            return StepOutcome(ok=False, detail=f"timed out after {format_duration(step.timeout_s)}", operation=operation)
        assert outcome is not None, f"step `{step.name}`: the attempt ended without an outcome"
        return outcome

    async def _wait_for_decision(self, step: ir.Step, record: StepRecord) -> _Ending:
        if record.state != INTERRUPTED:
            detail = f"attempt {record.attempt} was running when the run stopped; waiting for a decision"
            log.warning("runbook %s: step %s: %s", self.graph.runbook_id, step.name, detail)
            await self._record(step.name, INTERRUPTED, attempt=record.attempt, outcome=record.outcome, detail=detail)
            record = self.records[step.name]

        decision = await self.runner.decide(step, record)
        by = f" by {decision.by}" if decision.by else ""
        if decision.answer == RETRY:
            log.info("runbook %s: step %s: running it again, as decided%s", self.graph.runbook_id, step.name, by)
            return await self._attempts(step, record.operation, record.attempt + 1)
        if decision.answer == SKIP:
            return _Ending(SKIPPED, record.attempt, detail=f"skipped{by} after an interruption")
        if decision.answer == FAIL:
            return _Ending(FAILED, record.attempt, detail=f"failed{by} after an interruption", ran=True)
        raise ValueError(f"step `{step.name}`: decision {decision.answer!r} is not one of retry, skip or fail")

    # ------------------------------------------------------------ endings

    async def _conclude(self, step: ir.Step, ending: _Ending) -> None:
        name = step.name
        await self._record(name, ending.state, attempt=ending.attempt, outcome=ending.outcome, detail=ending.detail)
        crash_point("step.after_outcome")
        if ending.state != SKIPPED:
            outcome = ending.outcome or StepOutcome(ok=ending.state == SUCCEEDED, detail=ending.detail)
            self.step_values[name] = outcome.as_step_values()

        if ending.state == FAILED:
            log.warning("runbook %s: step %s failed: %s", self.graph.runbook_id, name, ending.detail)
            self._note_failure(name, ending.detail)
            if step.on_failure is not None and ending.ran:
                self._compensate(name, step.on_failure)

        compensated = self.awaiting_compensation.pop(name, [])
        if ending.state == SUCCEEDED:
            for failed in compensated:
                record = self.records[failed]
                await self._record(failed, COMPENSATED, attempt=record.attempt, outcome=record.outcome, detail=record.detail)

    def _compensate(self, failed: str, compensation: str) -> None:
        if compensation not in self.started:
            log.info("runbook %s: step %s: starting its compensation %s", self.graph.runbook_id, failed, compensation)
            self.awaiting_compensation[compensation] = [failed]
            self._launch(compensation)
        elif self.state(compensation) not in FINISHED_STATES:
            self.awaiting_compensation.setdefault(compensation, []).append(failed)
        else:
            # NOTE: `_launch` starts each step at most once per run, because a step has one
            # journal record. A compensation that finished for an earlier failure does not run again.
            log.warning(
                "runbook %s: step %s: its compensation %s already ran for another step; not running it again",
                self.graph.runbook_id,
                failed,
                compensation,
            )

    def _note_failure(self, name: str, detail: str) -> None:
        if self.failure is None:
            self.failure = (name, detail)

    async def settle(self, cancelled_detail: str | None) -> None:
        """Give every unfinished step its final state: CANCELLED, or SKIPPED for failure-path steps no failure led to."""
        for name in self.graph.order:
            if self.state(name) in FINISHED_STATES:
                continue
            record = self.records.get(name)
            attempt = record.attempt if record is not None else 0
            if cancelled_detail is not None:
                await self._record(name, CANCELLED, attempt=attempt, detail=cancelled_detail)
            elif name in self.graph.failure_path and not any(
                self.state(before) in _UNSUCCESSFUL for before in self.graph.predecessors(name)
            ):
                await self._record(name, SKIPPED, attempt=attempt, detail="not needed: no failure led to it")
            elif self.failure is not None:
                await self._record(
                    name, CANCELLED, attempt=attempt, detail=f"not started because step `{self.failure[0]}` failed"
                )
            else:
                await self._record(name, CANCELLED, attempt=attempt, detail="not started: it depends on a failure-path step")

    async def _record(
        self,
        name: str,
        state: str,
        *,
        attempt: int,
        outcome: StepOutcome | None = None,
        operation: Operation | None = None,
        detail: str = "",
    ) -> None:
        at = self.clock.now()
        with anyio.CancelScope(shield=True):
            await self.journal.record(name, state, attempt=attempt, at=at, outcome=outcome, operation=operation, detail=detail)
        kept = operation if operation is not None else _recorded_operation(self.records.get(name))
        self.records[name] = StepRecord(name, state, attempt, kept, outcome, detail, at)


def _approval_of(step: ir.Step) -> tuple[str, float | None] | None:
    """Return the team that approves the step and the time it has, or None when the step needs no approval."""
    if step.kind == APPROVE:
        timeout_s = step.args[1] if len(step.args) > 1 else None
        return str(step.args[0]), float(timeout_s) if timeout_s is not None else None
    if step.approval_team is not None:
        return step.approval_team, step.approval_timeout_s
    return None


def _refusal_text(step: ir.Step, decision: Decision, timeout_s: float | None) -> str:
    if decision.answer == DENIED:
        by = f" by {decision.by}" if decision.by else ""
        note = f": {decision.note}" if decision.note else ""
        return f"denied{by}{note}"
    if decision.answer == TIMED_OUT:
        return f"approval timed out after {format_duration(timeout_s)}" if timeout_s is not None else "approval timed out"
    raise ValueError(f"step `{step.name}`: approval answer {decision.answer!r} is not one of granted, denied or timed_out")


def _operation_ran(step: ir.Step, attempt: int) -> bool:
    return attempt >= 1 or step.kind == APPROVE


def _recorded_operation(record: StepRecord | None) -> Operation:
    return record.operation if record is not None else {}


def _remaining_s(timeout_s: float | None, started_at: datetime.datetime | None, now: datetime.datetime) -> float | None:
    if timeout_s is None or started_at is None:
        return timeout_s
    return timeout_s - (now - started_at).total_seconds()
