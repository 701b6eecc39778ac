"""The runbook executor on a virtual clock, with a runner whose steps follow a script.

Every test asserts the exact journal: which state each step reached, at which
attempt and at which virtual second. Virtual time moves only when every task
is blocked, so concurrency shows as overlapping times, not as real waits.
"""

from __future__ import annotations

import copy
import datetime
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from compiler import ir
from runtime.runbooks.clock import VirtualClock
from runtime.runbooks.executor import InMemoryJournal, Operation, execute_run, format_duration
from runtime.runbooks.model import (
    CANCELLED,
    COMPENSATED,
    DENIED,
    FAIL,
    FAILED,
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
    WAITING,
    Decision,
    StepOutcome,
    StepRecord,
    StepRejected,
)

pytestmark = pytest.mark.anyio

START = VirtualClock.DEFAULT_START
VALUES = {
    "labels": {"alertname": "ToolCriticalError", "namespace": "monitoring", "deployment": "prometheus"},
    "annotations": {"health_url": "https://prometheus.example.com/-/healthy"},
    "incident": {"id": 42, "severity": "high"},
}


# ---------------------------------------------------------------- building runbooks


def step(name: str, *, after: tuple[str, ...] = (), kind: str = "run", args: list[Any] | None = None, **fields: Any) -> ir.Step:
    return ir.Step(name=name, kind=kind, args=args if args is not None else [["true", name]], depends_on=list(after), **fields)


def runbook(*steps: ir.Step, timeout_s: float | None = None) -> ir.Runbook:
    return ir.Runbook(id="rb-test", timeout_s=timeout_s, steps=list(steps))


def step_path(*parts: str) -> dict[str, Any]:
    return {"path": ["steps", *parts]}


def greater(left: dict[str, Any], number: float) -> dict[str, Any]:
    return {"op": ">", "left": left, "right": {"value": number, "type": "number"}}


def rb003_shape() -> ir.Runbook:
    """Three checks in parallel; `validate_config` fails over to the compensation `restart_exporter`."""
    return runbook(
        step("collect_logs", read_only=True, timeout_s=60),
        step("check_api_health", kind="http", read_only=True, timeout_s=10, retry=2, backoff_s=5),
        step("validate_config", read_only=True, timeout_s=60, on_failure="restart_exporter"),
        step(
            "restart_exporter",
            kind="call",
            compensation=True,
            when={"not": step_path("validate_config", "ok")},
        ),
        timeout_s=900,
    )


# ---------------------------------------------------------------- the scripted runner


@dataclass(frozen=True)
class Attempt:
    """What one attempt of a step does: take `seconds` of virtual time, then end with this outcome."""

    seconds: float = 0.0
    ok: bool = True
    value: Any = None
    detail: str = ""
    retryable: bool = True


class ScriptedRunner:
    """A step runner whose attempts, approvals and decisions follow a script, and which notes every call."""

    def __init__(
        self,
        clock: VirtualClock,
        attempts: Mapping[str, list[Attempt]] | None = None,
        approvals: Mapping[str, tuple[float, Decision | None]] | None = None,
        decisions: Mapping[str, tuple[float, Decision]] | None = None,
        rejected: Mapping[str, str] | None = None,
    ) -> None:
        self.clock = clock
        self.attempts = dict(attempts or {})
        self.approvals = dict(approvals or {})
        self.decisions = dict(decisions or {})
        self.rejected = dict(rejected or {})
        self.prepared: dict[str, list[Operation]] = defaultdict(list)
        self.seen_steps: dict[str, dict[str, Any]] = {}
        self.executed: list[tuple[float, str, Operation]] = []
        self.cancelled: list[tuple[float, str]] = []
        self.asked: list[tuple[float, str, Operation, str, float | None]] = []
        self.decide_calls: list[tuple[float, str, str, int]] = []

    def executions(self, name: str) -> list[Operation]:
        return [operation for _, executed, operation in self.executed if executed == name]

    async def prepare(self, step: ir.Step, values: Mapping[str, Any]) -> Operation:
        self.seen_steps[step.name] = values["steps"]
        if step.name in self.rejected:
            raise StepRejected(self.rejected[step.name])
        operation = {"step": step.name, "kind": step.kind, "args": copy.deepcopy(step.args)}
        self.prepared[step.name].append(operation)
        return operation

    async def execute(self, step: ir.Step, operation: Operation) -> StepOutcome:
        script = self.attempts.get(step.name, [Attempt()])
        attempt = script[min(len(self.executions(step.name)), len(script) - 1)]
        self.executed.append((self.clock.elapsed, step.name, operation))
        try:
            await self.clock.sleep(attempt.seconds)
        except anyio.get_cancelled_exc_class():
            self.cancelled.append((self.clock.elapsed, step.name))
            raise
        return StepOutcome(
            ok=attempt.ok, value=attempt.value, detail=attempt.detail, retryable=attempt.retryable, operation=operation
        )

    async def approve(self, step: ir.Step, operation: Operation, team: str, timeout_s: float | None) -> Decision:
        self.asked.append((self.clock.elapsed, step.name, operation, team, timeout_s))
        seconds, decision = self.approvals.get(step.name, (0.0, Decision(GRANTED, by="alice")))
        if decision is None:
            await anyio.sleep_forever()
        await self.clock.sleep(seconds)
        assert decision is not None
        return decision

    async def decide(self, step: ir.Step, record: StepRecord) -> Decision:
        self.decide_calls.append((self.clock.elapsed, step.name, record.state, record.attempt))
        seconds, decision = self.decisions[step.name]
        await self.clock.sleep(seconds)
        return decision


def seconds(at: datetime.datetime | None) -> float:
    assert at is not None
    return (at - START).total_seconds()


def timeline(journal: InMemoryJournal, name: str | None = None) -> list[tuple[float, str, str, int]]:
    """Return every journal record as (virtual second, step, state, attempt), for one step or all."""
    return [
        (seconds(entry.at), entry.name, entry.state, entry.attempt)
        for entry in journal.history
        if name is None or entry.name == name
    ]


def final_states(journal: InMemoryJournal) -> dict[str, str]:
    return {name: record.state for name, record in journal.records.items()}


# ---------------------------------------------------------------- order and concurrency


async def test_chain_runs_in_order():
    rb = runbook(step("a"), step("b", after=("a",)), step("c", after=("b",)))
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {name: [Attempt(seconds=1)] for name in "abc"})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert result.detail == "every step succeeded or was skipped"
    assert timeline(journal) == [
        (0, "a", RUNNING, 1),
        (1, "a", SUCCEEDED, 1),
        (1, "b", RUNNING, 1),
        (2, "b", SUCCEEDED, 1),
        (2, "c", RUNNING, 1),
        (3, "c", SUCCEEDED, 1),
    ]
    assert journal.result == (RUN_SUCCEEDED, "every step succeeded or was skipped")
    assert {name: record.state for name, record in result.steps.items()} == {"a": SUCCEEDED, "b": SUCCEEDED, "c": SUCCEEDED}


async def test_parallel_steps_overlap():
    rb = runbook(
        step("first"),
        step("left", after=("first",)),
        step("right", after=("first",)),
        step("join", after=("left", "right")),
    )
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"left": [Attempt(seconds=10)], "right": [Attempt(seconds=10)]})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)
        assert clock.elapsed == 10

    assert result.state == RUN_SUCCEEDED
    assert [(at, name) for at, name, _ in runner.executed] == [(0, "first"), (0, "left"), (0, "right"), (10, "join")]
    assert timeline(journal, "left") == [(0, "left", RUNNING, 1), (10, "left", SUCCEEDED, 1)]
    assert timeline(journal, "right") == [(0, "right", RUNNING, 1), (10, "right", SUCCEEDED, 1)]
    assert timeline(journal, "join") == [(10, "join", RUNNING, 1), (10, "join", SUCCEEDED, 1)]


async def test_join_waits_for_slowest_branch():
    rb = runbook(step("fast"), step("slow"), step("join", after=("fast", "slow")))
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"fast": [Attempt(seconds=3)], "slow": [Attempt(seconds=40)]})
        journal = InMemoryJournal()
        await execute_run(rb, runner, journal, clock, VALUES)

    assert timeline(journal, "join") == [(40, "join", RUNNING, 1), (40, "join", SUCCEEDED, 1)]


# ---------------------------------------------------------------- conditions


def when_rb() -> ir.Runbook:
    return runbook(
        step("check_limits", kind="query", read_only=True),
        step("restart_highest", after=("check_limits",), when=greater(step_path("check_limits", "value"), 0.9)),
        step(
            "confirm",
            kind="query",
            after=("restart_highest",),
            when={"op": "==", "left": step_path("restart_highest", "ok"), "right": {"value": True, "type": "bool"}},
        ),
        step("report", kind="report", after=("confirm",)),
    )


async def test_false_condition_skips_step():
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"check_limits": [Attempt(value=0.5)]})
        journal = InMemoryJournal()
        result = await execute_run(when_rb(), runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert final_states(journal) == {
        "check_limits": SUCCEEDED,
        "restart_highest": SKIPPED,
        "confirm": SKIPPED,
        "report": SUCCEEDED,
    }
    assert journal.records["restart_highest"].detail == "condition is false"
    assert journal.records["restart_highest"].attempt == 0
    assert "restart_highest" not in runner.prepared
    assert runner.executions("restart_highest") == []
    # A skipped step leaves no values: later steps see it missing.
    assert set(runner.seen_steps["report"]) == {"check_limits"}


async def test_true_condition_runs_step():
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"check_limits": [Attempt(value=0.95)]})
        journal = InMemoryJournal()
        result = await execute_run(when_rb(), runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert final_states(journal) == {name: SUCCEEDED for name in ("check_limits", "restart_highest", "confirm", "report")}
    assert runner.seen_steps["restart_highest"]["check_limits"]["value"] == 0.95
    assert runner.seen_steps["report"]["restart_highest"]["ok"] is True


async def test_condition_reads_alert_labels():
    rb = runbook(
        step(
            "only_prod", when={"op": "==", "left": {"path": ["label", "namespace"]}, "right": {"value": "prod", "type": "string"}}
        ),
        step(
            "only_monitoring",
            when={"op": "==", "left": {"path": ["label", "namespace"]}, "right": {"value": "monitoring", "type": "string"}},
        ),
    )
    async with VirtualClock.running() as clock:
        journal = InMemoryJournal()
        await execute_run(rb, ScriptedRunner(clock), journal, clock, VALUES)

    assert final_states(journal) == {"only_prod": SKIPPED, "only_monitoring": SUCCEEDED}


# ---------------------------------------------------------------- timeouts and retries


async def test_timeout_fails_at_its_second():
    rb = runbook(step("hang", read_only=True, timeout_s=30), step("after", after=("hang",)))
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"hang": [Attempt(seconds=3600)]})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)
        assert clock.elapsed == 30

    assert result.state == RUN_FAILED
    assert result.detail == "step `hang` failed: timed out after 30s"
    assert timeline(journal) == [
        (0, "hang", RUNNING, 1),
        (30, "hang", FAILED, 1),
        (30, "after", CANCELLED, 0),
    ]
    assert runner.cancelled == [(30, "hang")]
    assert journal.records["hang"].outcome == StepOutcome(
        ok=False, detail="timed out after 30s", operation=runner.prepared["hang"][0]
    )
    assert journal.records["after"].detail == "not started because step `hang` failed"


async def test_retries_wait_doubling_backoff():
    rb = runbook(step("check_api_health", kind="http", read_only=True, timeout_s=10, retry=2, backoff_s=5))
    script = [
        Attempt(seconds=1, ok=False, detail="HTTP 503"),
        Attempt(seconds=1, ok=False, detail="HTTP 503"),
        Attempt(seconds=1),
    ]
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"check_api_health": script})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert timeline(journal) == [
        (0, "check_api_health", RUNNING, 1),
        (1, "check_api_health", PENDING, 1),
        (6, "check_api_health", RUNNING, 2),
        (7, "check_api_health", PENDING, 2),
        (17, "check_api_health", RUNNING, 3),
        (18, "check_api_health", SUCCEEDED, 3),
    ]
    assert [entry.detail for entry in journal.history if entry.state == PENDING] == [
        "attempt 1 failed: HTTP 503; retrying in 5s",
        "attempt 2 failed: HTTP 503; retrying in 10s",
    ]
    # Every attempt runs the one operation that was prepared.
    assert len(runner.prepared["check_api_health"]) == 1
    assert all(operation is runner.prepared["check_api_health"][0] for operation in runner.executions("check_api_health"))


async def test_retries_stop_after_budget():
    rb = runbook(step("probe", kind="query", read_only=True, retry=2, backoff_s=5))
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"probe": [Attempt(ok=False, detail="no data")]})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_FAILED
    assert result.detail == "step `probe` failed: no data"
    assert [at for at, _, _ in runner.executed] == [0, 5, 15]
    assert timeline(journal)[-1] == (15, "probe", FAILED, 3)


async def test_retry_default_backoff_is_one_second():
    rb = runbook(step("probe", kind="query", read_only=True, retry=3))
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"probe": [Attempt(ok=False)] * 3 + [Attempt()]})
        journal = InMemoryJournal()
        await execute_run(rb, runner, journal, clock, VALUES)

    assert [at for at, _, _ in runner.executed] == [0, 1, 3, 7]
    assert journal.history[1].detail == "attempt 1 failed; retrying in 1s"


async def test_timed_out_attempt_is_retried():
    rb = runbook(step("probe", kind="query", read_only=True, timeout_s=10, retry=1, backoff_s=2))
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"probe": [Attempt(seconds=60), Attempt(seconds=1)]})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert [at for at, _, _ in runner.executed] == [0, 12]
    assert journal.history[1].detail == "attempt 1 failed: timed out after 10s; retrying in 2s"


async def test_mutating_step_is_not_retried():
    rb = runbook(step("apply_plan", retry=2, backoff_s=5))
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"apply_plan": [Attempt(ok=False, detail="exit code 1")]})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_FAILED
    assert len(runner.executions("apply_plan")) == 1
    assert timeline(journal) == [(0, "apply_plan", RUNNING, 1), (0, "apply_plan", FAILED, 1)]


async def test_idempotent_mutating_step_is_retried():
    rb = runbook(step("scale", kind="call", idempotent=True, retry=1, backoff_s=5))
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"scale": [Attempt(ok=False), Attempt()]})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert [at for at, _, _ in runner.executed] == [0, 5]


async def test_unretryable_outcome_is_not_retried():
    rb = runbook(step("probe", kind="http", read_only=True, retry=3))
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"probe": [Attempt(ok=False, detail="HTTP 404", retryable=False)]})
        journal = InMemoryJournal()
        await execute_run(rb, runner, journal, clock, VALUES)

    assert len(runner.executions("probe")) == 1
    assert journal.records["probe"].state == FAILED


async def test_rejected_operation_fails_without_running():
    rb = runbook(step("restart", on_failure="undo"), step("undo", compensation=True))
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, rejected={"restart": "argument `name` does not match ^[a-z0-9-]+$"})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.detail == "step `restart` failed: invalid operation: argument `name` does not match ^[a-z0-9-]+$"
    assert runner.executed == []
    # Nothing ran, so there is nothing to compensate.
    assert final_states(journal) == {"restart": FAILED, "undo": SKIPPED}


# ---------------------------------------------------------------- failure and compensation


async def test_failed_validation_runs_compensation():
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(
            clock,
            {
                "collect_logs": [Attempt(seconds=20)],
                "check_api_health": [Attempt(seconds=2)],
                "validate_config": [Attempt(seconds=4, ok=False, detail="exit code 1")],
                "restart_exporter": [Attempt(seconds=3)],
            },
        )
        journal = InMemoryJournal()
        result = await execute_run(rb003_shape(), runner, journal, clock, VALUES)

    assert result.state == RUN_FAILED
    assert result.detail == "step `validate_config` failed: exit code 1"
    assert timeline(journal, "validate_config") == [
        (0, "validate_config", RUNNING, 1),
        (4, "validate_config", FAILED, 1),
        (7, "validate_config", COMPENSATED, 1),
    ]
    assert timeline(journal, "restart_exporter") == [(4, "restart_exporter", RUNNING, 1), (7, "restart_exporter", SUCCEEDED, 1)]
    # Its condition read the failed step's values.
    assert runner.seen_steps["restart_exporter"]["validate_config"]["ok"] is False
    # Steps that were running when validation failed finish normally.
    assert final_states(journal)["collect_logs"] == SUCCEEDED
    assert final_states(journal)["check_api_health"] == SUCCEEDED
    assert journal.records["validate_config"].detail == "exit code 1"


async def test_passed_validation_never_restarts():
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock)
        journal = InMemoryJournal()
        result = await execute_run(rb003_shape(), runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert final_states(journal) == {
        "collect_logs": SUCCEEDED,
        "check_api_health": SUCCEEDED,
        "validate_config": SUCCEEDED,
        "restart_exporter": SKIPPED,
    }
    assert journal.records["restart_exporter"].detail == "not needed: no failure led to it"
    assert "restart_exporter" not in runner.prepared
    assert runner.executions("restart_exporter") == []


async def test_failed_compensation_leaves_step_failed():
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(
            clock,
            {
                "validate_config": [Attempt(ok=False, detail="exit code 1")],
                "restart_exporter": [Attempt(ok=False, detail="exit code 2")],
            },
        )
        journal = InMemoryJournal()
        result = await execute_run(rb003_shape(), runner, journal, clock, VALUES)

    assert result.detail == "step `validate_config` failed: exit code 1"
    assert final_states(journal)["validate_config"] == FAILED
    assert final_states(journal)["restart_exporter"] == FAILED


async def test_failure_stops_later_normal_steps():
    rb = runbook(
        step("open_breaker", on_failure="close_breaker"),
        step("move_traffic", after=("open_breaker",), on_failure="close_breaker"),
        step("announce", kind="notify", after=("move_traffic",)),
        step("close_breaker", compensation=True),
        step("tell_owners", kind="notify", after=("close_breaker",)),
    )
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"move_traffic": [Attempt(seconds=2, ok=False, detail="HTTP 500")]})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_FAILED
    assert final_states(journal) == {
        "open_breaker": SUCCEEDED,
        "move_traffic": COMPENSATED,
        "close_breaker": SUCCEEDED,
        "tell_owners": SUCCEEDED,
        "announce": CANCELLED,
    }
    assert journal.records["announce"].detail == "not started because step `move_traffic` failed"
    assert runner.executions("announce") == []
    # The failure-path step after the compensation runs once the compensation finished.
    assert timeline(journal, "tell_owners")[0] == (2, "tell_owners", RUNNING, 1)


async def test_untriggered_failure_path_is_skipped():
    rb = runbook(
        step("open_breaker", on_failure="close_breaker"),
        step("close_breaker", compensation=True),
        step("tell_owners", kind="notify", after=("close_breaker",)),
    )
    async with VirtualClock.running() as clock:
        journal = InMemoryJournal()
        result = await execute_run(rb, ScriptedRunner(clock), journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert final_states(journal) == {"open_breaker": SUCCEEDED, "close_breaker": SKIPPED, "tell_owners": SKIPPED}


async def test_failure_path_after_failed_compensation_is_cancelled():
    rb = runbook(
        step("open_breaker", on_failure="close_breaker"),
        step("close_breaker", compensation=True),
        step("tell_owners", kind="notify", after=("close_breaker",)),
    )
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"open_breaker": [Attempt(ok=False)], "close_breaker": [Attempt(ok=False)]})
        journal = InMemoryJournal()
        await execute_run(rb, runner, journal, clock, VALUES)

    assert final_states(journal) == {"open_breaker": FAILED, "close_breaker": FAILED, "tell_owners": CANCELLED}


async def test_shared_compensation_runs_once():
    rb = runbook(
        step("left", on_failure="undo"),
        step("right", on_failure="undo"),
        step("undo", compensation=True),
    )
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(
            clock,
            {"left": [Attempt(seconds=1, ok=False)], "right": [Attempt(seconds=2, ok=False)], "undo": [Attempt(seconds=5)]},
        )
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.detail == "step `left` failed"
    assert len(runner.executions("undo")) == 1
    assert final_states(journal) == {"left": COMPENSATED, "right": COMPENSATED, "undo": SUCCEEDED}


# ---------------------------------------------------------------- approval


def approval_rb() -> ir.Runbook:
    return runbook(
        step("analyze_drift", read_only=True),
        step(
            "apply_plan",
            after=("analyze_drift",),
            risk="high",
            approval_team="infrastructure",
            approval_timeout_s=3600,
            on_failure="notify_failure",
        ),
        step("notify_failure", kind="notify", compensation=True),
    )


async def test_granted_approval_runs_shown_operation():
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, approvals={"apply_plan": (120, Decision(GRANTED, by="alice"))})
        journal = InMemoryJournal()
        result = await execute_run(approval_rb(), runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert timeline(journal, "apply_plan") == [
        (0, "apply_plan", WAITING, 0),
        (120, "apply_plan", RUNNING, 1),
        (120, "apply_plan", SUCCEEDED, 1),
    ]
    waiting = journal.history[2]
    assert waiting.detail == "waiting for approval from infrastructure"
    [(asked_at, _, shown, team, timeout_s)] = runner.asked
    assert (asked_at, team, timeout_s) == (0, "infrastructure", 3600)
    [executed] = runner.executions("apply_plan")
    assert executed is shown
    assert json.dumps(waiting.operation, sort_keys=True) == json.dumps(executed, sort_keys=True)


async def test_operation_is_journaled_before_approval():
    order: list[str] = []

    class NotingJournal(InMemoryJournal):
        async def record(self, name: str, state: str, **fields: Any) -> None:
            order.append(f"record {name} {state}")
            await super().record(name, state, **fields)

    class NotingRunner(ScriptedRunner):
        async def approve(self, step: ir.Step, operation: Operation, team: str, timeout_s: float | None) -> Decision:
            order.append(f"approve {step.name}")
            return await super().approve(step, operation, team, timeout_s)

    async with VirtualClock.running() as clock:
        await execute_run(approval_rb(), NotingRunner(clock), NotingJournal(), clock, VALUES)

    assert order.index("record apply_plan waiting") < order.index("approve apply_plan")


async def test_denied_approval_fails_without_running():
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, approvals={"apply_plan": (300, Decision(DENIED, by="bob", note="wrong workspace"))})
        journal = InMemoryJournal()
        result = await execute_run(approval_rb(), runner, journal, clock, VALUES)

    assert result.state == RUN_FAILED
    assert result.detail == "step `apply_plan` failed: denied by bob: wrong workspace"
    assert timeline(journal, "apply_plan") == [(0, "apply_plan", WAITING, 0), (300, "apply_plan", FAILED, 0)]
    assert runner.executions("apply_plan") == []
    # The operation never ran, so its compensation does not either.
    assert final_states(journal)["notify_failure"] == SKIPPED


async def test_unanswered_approval_times_out():
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, approvals={"apply_plan": (0, None)})
        journal = InMemoryJournal()
        result = await execute_run(approval_rb(), runner, journal, clock, VALUES)
        assert clock.elapsed == 3600

    assert result.detail == "step `apply_plan` failed: approval timed out after 1h"
    assert timeline(journal, "apply_plan") == [(0, "apply_plan", WAITING, 0), (3600, "apply_plan", FAILED, 0)]
    assert runner.executions("apply_plan") == []


async def test_approve_step_is_its_own_operation():
    rb = runbook(
        step("approval", kind="approve", args=["infrastructure", 900.0], read_only=True),
        step("apply_plan", after=("approval",)),
    )
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, approvals={"approval": (60, Decision(GRANTED, by="carol"))})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert timeline(journal) == [
        (0, "approval", WAITING, 1),
        (60, "approval", SUCCEEDED, 1),
        (60, "apply_plan", RUNNING, 1),
        (60, "apply_plan", SUCCEEDED, 1),
    ]
    assert journal.records["approval"].detail == "approved by carol"
    assert [name for _, name, _ in runner.executed] == ["apply_plan"]
    assert [(team, timeout_s) for _, _, _, team, timeout_s in runner.asked] == [("infrastructure", 900.0)]


async def test_timed_out_approve_step_compensates():
    rb = runbook(
        step("approval", kind="approve", args=["application", 900.0], read_only=True, on_failure="tell_requester"),
        step("open_breaker", after=("approval",)),
        step("tell_requester", kind="notify", compensation=True),
    )
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, approvals={"approval": (0, None)})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.detail == "step `approval` failed: approval timed out after 15m"
    assert final_states(journal) == {"approval": COMPENSATED, "tell_requester": SUCCEEDED, "open_breaker": CANCELLED}
    assert timeline(journal, "tell_requester")[0] == (900, "tell_requester", RUNNING, 1)


# ---------------------------------------------------------------- the run's deadline


async def test_deadline_cancels_running_steps():
    rb = runbook(
        step("quick"),
        step("stuck", after=("quick",)),
        step("next", after=("stuck",)),
        timeout_s=900,
    )
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"quick": [Attempt(seconds=1)], "stuck": [Attempt(seconds=7200)]})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)
        assert clock.elapsed == 900

    assert result.state == RUN_CANCELLED
    assert result.detail == "deadline of 15m passed"
    assert journal.result == (RUN_CANCELLED, "deadline of 15m passed")
    assert runner.cancelled == [(900, "stuck")]
    assert timeline(journal) == [
        (0, "quick", RUNNING, 1),
        (1, "quick", SUCCEEDED, 1),
        (1, "stuck", RUNNING, 1),
        (900, "stuck", CANCELLED, 1),
        (900, "next", CANCELLED, 0),
    ]
    assert journal.records["next"].detail == "deadline of 15m passed"


async def test_deadline_ends_approval_wait():
    async with VirtualClock.running() as clock:
        rb = approval_rb().model_copy(update={"timeout_s": 1800.0})
        runner = ScriptedRunner(clock, approvals={"apply_plan": (0, None)})
        journal = InMemoryJournal()
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_CANCELLED
    assert result.detail == "deadline of 30m passed"
    assert timeline(journal, "apply_plan") == [(0, "apply_plan", WAITING, 0), (1800, "apply_plan", CANCELLED, 0)]
    assert final_states(journal)["notify_failure"] == CANCELLED


async def test_resumed_run_gets_remaining_deadline():
    rb = runbook(step("stuck"), timeout_s=900)
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, {"stuck": [Attempt(seconds=7200)]})
        started_at = START - datetime.timedelta(seconds=600)
        result = await execute_run(rb, runner, InMemoryJournal(), clock, VALUES, started_at=started_at)
        assert clock.elapsed == 300

    assert result.state == RUN_CANCELLED


async def test_resumed_run_past_deadline_cancelled():
    rb = runbook(step("first"), step("second", after=("first",)), timeout_s=900)
    journal = InMemoryJournal({"first": recorded("first", SUCCEEDED, 1, outcome=StepOutcome(ok=True))})
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock)
        started_at = START - datetime.timedelta(seconds=1200)
        result = await execute_run(rb, runner, journal, clock, VALUES, started_at=started_at)

    assert result.state == RUN_CANCELLED
    assert result.detail == "deadline of 15m passed"
    assert runner.executions("second") == []
    assert final_states(journal) == {"first": SUCCEEDED, "second": CANCELLED}
    assert journal.records["second"].detail == "deadline of 15m passed"


# ---------------------------------------------------------------- resume after a crash


def recorded(name: str, state: str, attempt: int, operation: Operation | None = None, **fields: Any) -> StepRecord:
    return StepRecord(name, state, attempt, operation or {"step": name, "recorded": True}, at=START, **fields)


async def test_resume_reruns_read_only_step():
    rb = runbook(
        step("check_limits", kind="query", read_only=True),
        step("top_pods", after=("check_limits",), read_only=True),
        step("restart_highest", after=("top_pods",), when=greater(step_path("check_limits", "value"), 0.9)),
    )
    journal = InMemoryJournal(
        {
            "check_limits": recorded("check_limits", SUCCEEDED, 1, outcome=StepOutcome(ok=True, value=0.95)),
            "top_pods": recorded("top_pods", RUNNING, 1, {"argv": ["kubectl", "top", "pods"]}),
        }
    )
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock)
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert runner.executions("check_limits") == []
    assert "top_pods" not in runner.prepared
    assert runner.executions("top_pods") == [{"argv": ["kubectl", "top", "pods"]}]
    assert timeline(journal, "top_pods") == [(0, "top_pods", RUNNING, 2), (0, "top_pods", SUCCEEDED, 2)]
    # The earlier outcome feeds the condition of a later step.
    assert final_states(journal)["restart_highest"] == SUCCEEDED
    assert runner.seen_steps["restart_highest"]["check_limits"]["value"] == 0.95


async def test_resume_interrupts_mutating_step():
    rb = runbook(step("apply_plan"), step("announce", kind="notify", after=("apply_plan",)))
    operation = {"argv": ["terraform", "apply", "drift.tfplan"]}
    journal = InMemoryJournal({"apply_plan": recorded("apply_plan", RUNNING, 1, operation)})
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, decisions={"apply_plan": (300, Decision(RETRY, by="alice"))})
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert runner.decide_calls == [(0, "apply_plan", INTERRUPTED, 1)]
    assert timeline(journal, "apply_plan") == [
        (0, "apply_plan", INTERRUPTED, 1),
        (300, "apply_plan", RUNNING, 2),
        (300, "apply_plan", SUCCEEDED, 2),
    ]
    assert journal.history[0].detail == "attempt 1 was running when the run stopped; waiting for a decision"
    assert runner.executed == [(300, "apply_plan", operation), (300, "announce", runner.prepared["announce"][0])]


async def test_resume_skip_decision_skips_step():
    rb = runbook(step("apply_plan"), step("announce", kind="notify", after=("apply_plan",)))
    journal = InMemoryJournal({"apply_plan": recorded("apply_plan", INTERRUPTED, 1)})
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, decisions={"apply_plan": (60, Decision(SKIP, by="alice"))})
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert runner.executions("apply_plan") == []
    assert timeline(journal, "apply_plan") == [(60, "apply_plan", SKIPPED, 1)]
    assert journal.records["apply_plan"].detail == "skipped by alice after an interruption"
    assert final_states(journal)["announce"] == SUCCEEDED


async def test_resume_fail_decision_compensates():
    rb = runbook(step("open_breaker", on_failure="close_breaker"), step("close_breaker", compensation=True))
    journal = InMemoryJournal({"open_breaker": recorded("open_breaker", RUNNING, 1)})
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, decisions={"open_breaker": (60, Decision(FAIL, by="alice"))})
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.detail == "step `open_breaker` failed: failed by alice after an interruption"
    assert runner.executions("open_breaker") == []
    assert timeline(journal) == [
        (0, "open_breaker", INTERRUPTED, 1),
        (60, "open_breaker", FAILED, 1),
        (60, "close_breaker", RUNNING, 1),
        (60, "close_breaker", SUCCEEDED, 1),
        (60, "open_breaker", COMPENSATED, 1),
    ]


async def test_resume_keeps_waiting_for_approval():
    shown = {"argv": ["terraform", "apply", "drift.tfplan"]}
    waiting = StepRecord("apply_plan", WAITING, 0, shown, at=START - datetime.timedelta(minutes=40))
    journal = InMemoryJournal({"analyze_drift": recorded("analyze_drift", SUCCEEDED, 1), "apply_plan": waiting})
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, approvals={"apply_plan": (0, None)})
        result = await execute_run(approval_rb(), runner, journal, clock, VALUES)
        assert clock.elapsed == 1200

    assert result.detail == "step `apply_plan` failed: approval timed out after 1h"
    assert [(operation, timeout_s) for _, _, operation, _, timeout_s in runner.asked] == [(shown, 1200)]
    assert "apply_plan" not in runner.prepared


async def test_resume_approval_granted_runs_recorded_operation():
    shown = {"argv": ["terraform", "apply", "drift.tfplan"]}
    journal = InMemoryJournal(
        {"analyze_drift": recorded("analyze_drift", SUCCEEDED, 1), "apply_plan": recorded("apply_plan", WAITING, 0, shown)}
    )
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, approvals={"apply_plan": (30, Decision(GRANTED, by="alice"))})
        await execute_run(approval_rb(), runner, journal, clock, VALUES)

    assert runner.executions("apply_plan") == [shown]


async def test_resume_continues_retry_wait():
    rb = runbook(step("probe", kind="query", read_only=True, retry=2, backoff_s=5))
    journal = InMemoryJournal({"probe": recorded("probe", PENDING, 1, outcome=StepOutcome(ok=False))})
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock)
        result = await execute_run(rb, runner, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert timeline(journal) == [(0, "probe", RUNNING, 2), (0, "probe", SUCCEEDED, 2)]


async def test_resume_runs_owed_compensation():
    journal = InMemoryJournal(
        {
            "collect_logs": recorded("collect_logs", SUCCEEDED, 1),
            "check_api_health": recorded("check_api_health", SUCCEEDED, 1),
            "validate_config": recorded("validate_config", FAILED, 1, outcome=StepOutcome(ok=False), detail="exit code 1"),
        }
    )
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock)
        result = await execute_run(rb003_shape(), runner, journal, clock, VALUES)

    assert result.detail == "step `validate_config` failed: exit code 1"
    assert [name for _, name, _ in runner.executed] == ["restart_exporter"]
    assert final_states(journal)["validate_config"] == COMPENSATED


async def test_resume_records_finished_compensation():
    journal = InMemoryJournal(
        {
            "validate_config": recorded("validate_config", FAILED, 1, detail="exit code 1"),
            "restart_exporter": recorded("restart_exporter", SUCCEEDED, 1),
            "collect_logs": recorded("collect_logs", SUCCEEDED, 1),
            "check_api_health": recorded("check_api_health", SUCCEEDED, 1),
        }
    )
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock)
        await execute_run(rb003_shape(), runner, journal, clock, VALUES)

    assert runner.executed == []
    assert final_states(journal)["validate_config"] == COMPENSATED


async def test_resume_rejects_unknown_step():
    journal = InMemoryJournal({"gone": recorded("gone", SUCCEEDED, 1)})
    async with VirtualClock.running() as clock:
        with pytest.raises(ValueError, match="the journal has step `gone`, which runbook `rb-test` does not have"):
            await execute_run(runbook(step("a")), ScriptedRunner(clock), journal, clock, VALUES)


async def test_crash_never_repeats_mutating_step():
    rb = runbook(
        step("check", read_only=True), step("restart", after=("check",), on_failure="undo"), step("undo", compensation=True)
    )
    journal = InMemoryJournal()
    async with VirtualClock.running() as clock:
        first = ScriptedRunner(clock, {"restart": [Attempt(seconds=600)]})
        # The daemon dies 30 s into the run, while `restart` runs.
        with clock.deadline_scope(30) as crash:
            await execute_run(rb, first, journal, clock, VALUES)
        assert crash.cancelled_caught
        assert journal.result is None
        assert final_states(journal) == {"check": SUCCEEDED, "restart": RUNNING}

        second = ScriptedRunner(clock, decisions={"restart": (120, Decision(FAIL, by="alice"))})
        result = await execute_run(rb, second, journal, clock, VALUES)

    assert len(first.executions("restart")) == 1
    assert second.executions("restart") == []
    assert second.executions("check") == []
    assert second.decide_calls == [(30, "restart", INTERRUPTED, 1)]
    assert result.state == RUN_FAILED
    assert final_states(journal) == {"check": SUCCEEDED, "restart": COMPENSATED, "undo": SUCCEEDED}


async def test_crash_then_retry_runs_step_once_more():
    rb = runbook(step("restart"))
    journal = InMemoryJournal()
    async with VirtualClock.running() as clock:
        first = ScriptedRunner(clock, {"restart": [Attempt(seconds=600)]})
        with clock.deadline_scope(30):
            await execute_run(rb, first, journal, clock, VALUES)
        second = ScriptedRunner(clock, decisions={"restart": (10, Decision(RETRY, by="alice"))})
        result = await execute_run(rb, second, journal, clock, VALUES)

    assert result.state == RUN_SUCCEEDED
    assert second.executions("restart") == first.executions("restart")
    assert [record.attempt for record in journal.history if record.state == RUNNING] == [1, 2]


# ---------------------------------------------------------------- the compiled example runbooks


@pytest.fixture(scope="module")
def production_runbooks() -> dict[str, ir.Runbook]:
    from compiler.api import compile_rules

    examples = Path(__file__).resolve().parents[2] / "examples" / "production"
    ruleset = compile_rules(examples, environment="production")
    return {rb.id: rb for rb in ruleset.runbooks}


@pytest.mark.slow
async def test_compiled_rb003_compensates(production_runbooks: dict[str, ir.Runbook]):
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(
            clock,
            {
                "check_api_health": [Attempt(seconds=1, ok=False, detail="HTTP 503"), Attempt(seconds=1)],
                "validate_config": [Attempt(seconds=8, ok=False, detail="exit code 1")],
            },
        )
        journal = InMemoryJournal()
        result = await execute_run(production_runbooks["rb-003"], runner, journal, clock, VALUES)

    assert result.detail == "step `validate_config` failed: exit code 1"
    assert final_states(journal) == {
        "collect_logs": SUCCEEDED,
        "check_api_health": SUCCEEDED,
        "validate_config": COMPENSATED,
        "restart_exporter": SUCCEEDED,
    }
    assert [at for at, name, _ in runner.executed if name == "check_api_health"] == [0, 6]


@pytest.mark.slow
async def test_compiled_failover_waits_for_approval(production_runbooks: dict[str, ir.Runbook]):
    async with VirtualClock.running() as clock:
        runner = ScriptedRunner(clock, approvals={"approval": (0, Decision(DENIED, by="dave"))})
        journal = InMemoryJournal()
        result = await execute_run(production_runbooks["api-failover"], runner, journal, clock, VALUES)

    assert result.detail == "step `approval` failed: denied by dave"
    assert [name for _, name, _ in runner.executed] == ["check_standby"]
    assert final_states(journal) == {
        "check_standby": SUCCEEDED,
        "approval": FAILED,
        "open_breaker": CANCELLED,
        "move_traffic": CANCELLED,
        "announce": CANCELLED,
        "close_breaker": SKIPPED,
    }


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("seconds_", "text"),
    [(0, "0s"), (0.5, "0.5s"), (10, "10s"), (60, "1m"), (900, "15m"), (3600, "1h"), (5400, "1h30m"), (90061, "1d1h1m1s")],
)
def test_format_duration(seconds_: float, text: str):
    assert format_duration(seconds_) == text


async def test_runner_error_leaves_step_running():
    class BrokenRunner(ScriptedRunner):
        async def execute(self, step: ir.Step, operation: Operation) -> StepOutcome:
            raise RuntimeError("runner bug")

    journal = InMemoryJournal()
    async with VirtualClock.running() as clock:
        with pytest.raises(ExceptionGroup) as raised:
            await execute_run(runbook(step("restart")), BrokenRunner(clock), journal, clock, VALUES)

    assert raised.group_contains(RuntimeError, match="runner bug")
    assert final_states(journal) == {"restart": RUNNING}
    assert journal.result is None
