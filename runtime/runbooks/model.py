"""The shapes shared by the runbook executor, its step kinds and its journal in the store.

A run executes one runbook's step graph for one incident. Every step run has a
state, and every change of state is written to the journal (the store in the
daemon, memory in tests) before the executor acts on it, so a restarted
daemon knows exactly how far each run got.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Protocol

# States of a step run.
PENDING = "pending"
RUNNING = "running"
WAITING = "waiting"  # for an approval or a human decision
SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"
COMPENSATED = "compensated"  # failed, and its on_failure step ran
INTERRUPTED = "interrupted"  # a mutating step was running when the daemon died
CANCELLED = "cancelled"  # the run's deadline passed, or someone stopped the run
FINISHED_STATES = frozenset({SUCCEEDED, FAILED, SKIPPED, COMPENSATED, CANCELLED})

# States of a run.
RUN_RUNNING = "running"
RUN_WAITING = "waiting"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_CANCELLED = "cancelled"


@dataclass(slots=True)
class StepOutcome:
    """What one attempt of a step produced.

    `ok` decides success. `value` and `labels` are what later steps read as
    `steps.NAME.value` and `steps.NAME.labels` (a Prometheus query's first
    sample, an HTTP status); `output` is the captured text, already cut to its
    limit; `operation` is the exact command or request that ran (shown for
    approval and on the timeline); `detail` is a one-line reason.
    """

    ok: bool
    output: str = ""
    value: Any = None
    labels: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    detail: str = ""
    operation: dict[str, Any] = field(default_factory=dict)
    retryable: bool = True

    def as_step_values(self) -> dict[str, Any]:
        """Return what templates and conditions of later steps read as `steps.NAME`."""
        return {
            "ok": self.ok,
            "value": self.value,
            "labels": dict(self.labels),
            "output": self.output,
            "exit_code": self.exit_code,
        }


class Clock(Protocol):
    """Time for the executor: real in the daemon, virtual in tests."""

    def now(self) -> datetime.datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    def deadline_scope(self, seconds: float | None) -> Any:
        """Return a context manager that cancels its body after `seconds` (None: never); its `cancelled_caught` says whether it did."""
        ...


@dataclass(frozen=True, slots=True)
class StepRecord:
    """The journal's last entry for one step of a run.

    `attempt` is 0 until the step's operation first starts (a skip, a failed
    prepare, a wait for approval) and then counts attempts from 1; an `approve`
    step's wait is its attempt 1. `operation` is the exact operation that was
    recorded before approval or execution, and `at` is when the entry was
    written, by the executor's clock.
    """

    name: str
    state: str
    attempt: int = 0
    operation: dict[str, Any] = field(default_factory=dict)
    outcome: StepOutcome | None = None
    detail: str = ""
    at: datetime.datetime | None = None


# Decisions on an approval request.
GRANTED = "granted"
DENIED = "denied"
TIMED_OUT = "timed_out"
# Decisions on a step that was interrupted while it ran.
RETRY = "retry"
SKIP = "skip"
FAIL = "fail"
DECISION_ANSWERS = frozenset({GRANTED, DENIED, TIMED_OUT, RETRY, SKIP, FAIL})


@dataclass(frozen=True, slots=True)
class Decision:
    """A person's decision on an approval request or on an interrupted step, and who made it."""

    answer: str
    by: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.answer not in DECISION_ANSWERS:
            raise ValueError(f"invalid decision answer {self.answer!r}; expected one of {sorted(DECISION_ANSWERS)}")


class StepRejected(Exception):
    """Raised by a step runner's `prepare` when the operation cannot be built from the rules and the alert.

    Examples: a template fails to render, or a rendered argument does not match
    its action parameter's pattern. The message names the value and the rule.
    """
