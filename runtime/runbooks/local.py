"""Running a runbook on this host, as `irules test-runbook` does without `--dry-run`.

The run goes through the same store, runner and executor as the daemon's runs,
in a SQLite store of its own, and without an incident: `notify`, `set` and
`report` steps have nothing to act on and say so. What differs is who
approves. Steps named with `--approve` are granted; with
`--auto-approve-safe` so are read-only and low-risk steps; the rest are asked
on the terminal, showing the exact operation, or denied when there is no
terminal to ask on.
"""

from __future__ import annotations

import datetime
import getpass
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
import httpx

from compiler import ir
from runtime.policy import Policy
from runtime.runbooks import runs
from runtime.runbooks.clock import RealClock
from runtime.runbooks.executor import RunResult, execute_run
from runtime.runbooks.model import DENIED, FAILED, GRANTED, RUNNING, SUCCEEDED, TIMED_OUT, Decision, StepOutcome
from runtime.runbooks.operations import operation_text
from runtime.runbooks.steps import RunnerSettings, StoreRunner
from runtime.store import Store

# Lines of a step's output printed under it; the whole output stays in the store.
OUTPUT_LINES = 5
MARKS = {RUNNING: "→", SUCCEEDED: "✓", FAILED: "✗"}

# Returns True when the person at the terminal approves the step.
Prompt = Callable[[str], bool]


@dataclass(slots=True)
class LocalApprovals:
    """Approval settings of a run on this host: the steps granted up front, and a prompt for the others (None: deny)."""

    granted: frozenset[str] = frozenset()
    prompt: Prompt | None = None
    actor: str = field(default_factory=getpass.getuser)


class LocalRunner(StoreRunner):
    """A `StoreRunner` whose approvals are decided on this host instead of by a team."""

    def __init__(self, *args: Any, approvals: LocalApprovals, out: TextIO, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.approvals = approvals
        self.out = out

    async def approve(self, step: ir.Step, operation: dict[str, Any], team: str, timeout_s: float | None) -> Decision:
        now = self.clock.now()
        request_id = await anyio.to_thread.run_sync(lambda: self._ask(step, operation, team, now, timeout_s))
        if await anyio.to_thread.run_sync(runs.answer_of, self.store, request_id) is None:
            answer, note = await self._local_answer(step, operation, team)
            await anyio.to_thread.run_sync(
                lambda: runs.decide(self.store, self.run_id, step.name, answer, self.approvals.actor, self.clock.now(), note)
            )
        return await self._wait(request_id, TIMED_OUT)

    async def _local_answer(self, step: ir.Step, operation: dict[str, Any], team: str) -> tuple[str, str]:
        if step.name in self.approvals.granted:
            return GRANTED, "granted with --approve"
        if self.approvals.prompt is None:
            print(f"  step {step.name} needs approval from {team}: denied, no terminal to ask on", file=self.out)
            return DENIED, "no terminal to ask on; pass --approve STEP"
        question = f"Approve step {step.name} (approval from {team})?\n    {operation_text(operation)}\n"
        granted = await anyio.to_thread.run_sync(self.approvals.prompt, question, abandon_on_cancel=True)
        return (GRANTED, "granted at the terminal") if granted else (DENIED, "denied at the terminal")


class PrintingJournal(runs.StoreJournal):
    """The store's journal that also prints each step as it starts and ends."""

    def __init__(self, store: Store, run_id: int, out: TextIO) -> None:
        super().__init__(store, run_id)
        self.out = out

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
        await super().record(name, state, attempt=attempt, at=at, outcome=outcome, operation=operation, detail=detail)
        if state == "pending":
            return
        line = f"{MARKS.get(state, '·')} {name}: {state}"
        if state == RUNNING and attempt > 1:
            line += f" (attempt {attempt})"
        if state == RUNNING and operation:
            line += f": {operation_text(operation)}"
        elif detail:
            line += f": {detail}"
        print(line, file=self.out)
        if outcome is not None and outcome.output and state != RUNNING:
            lines = outcome.output.rstrip("\n").splitlines()
            for text in lines[:OUTPUT_LINES]:
                print(f"    {text}", file=self.out)
            if len(lines) > OUTPUT_LINES:
                print(f"    … {len(lines) - OUTPUT_LINES} more lines", file=self.out)
        self.out.flush()


async def run_locally(
    store: Store,
    policy: Policy,
    runbook: ir.Runbook,
    values: Mapping[str, Any],
    *,
    approvals: LocalApprovals,
    auto_approve_safe: bool = False,
    settings: RunnerSettings | None = None,
    out: TextIO = sys.stdout,
) -> tuple[int, RunResult]:
    """Run `runbook` for an alert's `values` on this host and return the run's id and result."""
    clock = RealClock()
    run_id = runs.start_run(
        store,
        runbook,
        incident_id=None,
        values=dict(values),
        trigger="local",
        requested_by=approvals.actor,
        now=clock.now(),
        auto_approve=auto_approve_safe,
    )
    async with httpx.AsyncClient() as client:
        runner = LocalRunner(store, policy, run_id, clock, client, settings, approvals=approvals, out=out)
        journal = PrintingJournal(store, run_id, out)
        result = await execute_run(runbook, runner, journal, clock, dict(values), started_at=clock.now())
    return run_id, result


def terminal_prompt(question: str) -> bool:
    """Ask `question` on the terminal and return True for yes; anything else, or end of input, is no."""
    sys.stderr.write(question + "  [y/N] ")
    sys.stderr.flush()
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
