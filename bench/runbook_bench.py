"""Benchmark the runbook executor's scheduling overhead per step.

The script starts many runs of one runbook at once, on the real clock and an
in-memory journal, with a runner whose steps do nothing: `prepare` returns a
one-key operation and `execute` returns success without awaiting. What it
measures is therefore the executor itself: building the step graph, one task
per step, the deadline scope of each attempt, two journal records per step
(running and succeeded) and one per run, and the scan for steps that became
ready.

Two shapes of runbook, both of `--steps` steps:
  - `chain`: each step depends on the one before it, as steps written one
    after another do;
  - `parallel`: one step, then a `parallel { }` group of the others but one,
    then a step after the group.

Each shape is timed with all runs started at once in one task group, and
with the runs one after another. The figure is wall time divided by the
number of steps run, best and median of `--repeat` measurements.

Usage:
    python bench/runbook_bench.py                      # 1,000 runs of 10 steps, both shapes
    python bench/runbook_bench.py --runs 5000 --steps 20
    python bench/runbook_bench.py --profile            # cProfile of one concurrent chain measurement
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from check_bench import machine  # noqa: E402

from compiler import ir  # noqa: E402
from runtime.runbooks.clock import RealClock  # noqa: E402
from runtime.runbooks.executor import InMemoryJournal, Operation, execute_run  # noqa: E402
from runtime.runbooks.model import RUN_SUCCEEDED, Decision, StepOutcome, StepRecord  # noqa: E402

TARGET_PER_STEP_S = 0.001
VALUES = {"labels": {"alertname": "BenchAlert", "namespace": "bench"}, "annotations": {}}


class NoOpRunner:
    """A step runner whose steps succeed at once and never ask anyone."""

    async def prepare(self, step: ir.Step, values: Mapping[str, Any]) -> Operation:
        return {"step": step.name}

    async def execute(self, step: ir.Step, operation: Operation) -> StepOutcome:
        return StepOutcome(ok=True, operation=operation)

    async def approve(self, step: ir.Step, operation: Operation, team: str, timeout_s: float | None) -> Decision:
        raise AssertionError(f"step `{step.name}` of the benchmark asked for approval")

    async def decide(self, step: ir.Step, record: StepRecord) -> Decision:
        raise AssertionError(f"step `{step.name}` of the benchmark asked for a decision")


def build_runbook(steps: int, shape: str) -> ir.Runbook:
    """Return a runbook of `steps` read-only steps with a 30 s timeout each, in the given shape."""
    names = [f"step_{index:02d}" for index in range(steps)]
    if shape == "chain":
        after = [[]] + [[name] for name in names[:-1]]
    else:
        middle = names[1:-1]
        after = [[]] + [[names[0]]] * len(middle) + [middle]
    return ir.Runbook(
        id=f"bench-{shape}",
        timeout_s=900,
        steps=[
            ir.Step(name=name, kind="query", args=["up"], depends_on=before, timeout_s=30, read_only=True)
            for name, before in zip(names, after, strict=True)
        ],
    )


async def run_many(runbook: ir.Runbook, runs: int, concurrent: bool) -> float:
    """Run `runs` runs of `runbook`; return the wall time in seconds."""
    clock = RealClock()
    runner = NoOpRunner()

    async def one_run() -> None:
        result = await execute_run(runbook, runner, InMemoryJournal(), clock, VALUES)
        assert result.state == RUN_SUCCEEDED, result.detail

    started = time.perf_counter()
    if concurrent:
        async with anyio.create_task_group() as task_group:
            for _ in range(runs):
                task_group.start_soon(one_run)
    else:
        for _ in range(runs):
            await one_run()
    return time.perf_counter() - started


def measure(runbook: ir.Runbook, runs: int, concurrent: bool, repeat: int) -> list[float]:
    """Return the wall time per step, in seconds, of each of `repeat` measurements."""
    per_step = []
    for _ in range(repeat):
        gc.collect()
        elapsed = anyio.run(run_many, runbook, runs, concurrent)
        per_step.append(elapsed / (runs * len(runbook.steps)))
    return per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000, help="runs per measurement (default: 1000)")
    parser.add_argument("--steps", type=int, default=10, help="steps per runbook, at least 3 (default: 10)")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per figure (default: 5)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one concurrent chain measurement")
    options = parser.parse_args()
    if options.steps < 3:
        parser.error(f"--steps must be at least 3, got {options.steps}")

    if options.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        anyio.run(run_many, build_runbook(options.steps, "chain"), options.runs, True)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        print(text.getvalue())
        return

    facts = machine()
    print(f"machine: {facts['cpu']}, {facts['cores']} cores, Python {facts['python']}, load {facts['load']}")
    print(f"{options.runs} runs of {options.steps} no-op steps, RealClock, InMemoryJournal, best and median of {options.repeat}")
    print()
    print("| shape | runs | per step, best | per step, median | steps per second |")
    print("| --- | --- | --- | --- | --- |")
    for shape in ("chain", "parallel"):
        runbook = build_runbook(options.steps, shape)
        for concurrent in (True, False):
            per_step = measure(runbook, options.runs, concurrent, options.repeat)
            best, median = min(per_step), statistics.median(per_step)
            label = "all at once" if concurrent else "one after another"
            print(f"| {shape} | {label} | {best * 1e6:.0f} µs | {median * 1e6:.0f} µs | {1 / median:,.0f} |")
    print()
    print(f"target: under {TARGET_PER_STEP_S * 1e3:g} ms per step")


if __name__ == "__main__":
    main()
