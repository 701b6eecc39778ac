"""Run scenario tests: feed a test's events to a simulation on a virtual clock, then compare what it produced.

The events go to `runtime.simulate.Simulation`, which applies them by time
(events of one moment in the written order), and the clock then runs to the
scenario's end. Every expectation is checked against the simulation's result.
Each one that does not hold becomes a `Mismatch` with the line of the
expectation, what it expected and what happened, and times are offsets from
the test's start:

    page database-oncall (line 14): expected at 1m, got at 30s (opened)

Scenarios run on the severity rules alone: where the rules say `classify`,
the level falls back as in a daemon without a model, so results do not
depend on the installed model.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from compiler import ir
from compiler.rule_tests import CaseResult, Mismatch
from compiler.transform import duration_text

if TYPE_CHECKING:
    from runtime.simulate import EscalationStep, Page, RunbookRun, Simulation, SimulationResult

Kind = ir.ScenarioExpectationKind


def run_scenario(ruleset: ir.Ruleset, case: ir.TestCase) -> CaseResult:
    """Run one scenario test and compare each of its expectations with the simulation's result."""
    from runtime.policy import Policy
    from runtime.simulate import Simulation

    scenario = case.scenario
    assert scenario is not None, "run_scenario is given scenario tests only"
    start = _moment(scenario.start)
    fired = [event.labels for event in scenario.events if event.kind is ir.ScenarioEventKind.FIRE]
    with Simulation(Policy(ruleset), start=start) as simulation:
        # The engine applies inputs by time, and inputs of one moment in the order given.
        for event in scenario.events:
            _give(simulation, event, start + datetime.timedelta(seconds=event.at_s), _picked(event.labels, fired))
        simulation.run_until(start + datetime.timedelta(seconds=scenario.until_s))
        outcome = simulation.result()

    result = CaseResult(case)
    check = _Check(outcome, start, result.mismatches)
    for event in scenario.events:
        check.event_had_effect(event)
    for expectation in scenario.expectations:
        _CHECKS[expectation.kind](check, expectation)
    return result


def _moment(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _picked(labels: dict[str, str], fired: list[dict[str, str]]) -> list[dict[str, str]]:
    """Return the label sets of the fired alerts that include every label of `labels`, each once.

    `ack` and `resolve` name a subset of an alert's labels, while the engine
    identifies an alert by all of them. The checker makes sure that a subset
    picks at least one fired alert; `labels` stand for themselves otherwise.
    """
    picked: list[dict[str, str]] = []
    for candidate in fired:
        if labels.items() <= candidate.items() and candidate not in picked:
            picked.append(candidate)
    return picked or [labels]


def _give(simulation: Simulation, event: ir.ScenarioEvent, at: datetime.datetime, alerts: list[dict[str, str]]) -> None:
    """Give one event to the simulation, acting on every fired alert it picks."""
    for labels in alerts if event.kind is not ir.ScenarioEventKind.FIRE else [event.labels]:
        match event.kind:
            case ir.ScenarioEventKind.FIRE:
                simulation.fire(labels, at=at, annotations=event.annotations)
            case ir.ScenarioEventKind.RESOLVE:
                simulation.resolve(labels, at=at)
            case ir.ScenarioEventKind.ACKNOWLEDGE:
                simulation.acknowledge(labels, at=at, by=event.by or "")
            case ir.ScenarioEventKind.RESOLVE_INCIDENT:
                simulation.resolve_incident(labels, at=at, by=event.by or "")


class _Check:
    """Compares expectations with one simulation result and records the mismatches."""

    def __init__(self, outcome: SimulationResult, start: datetime.datetime, mismatches: list[Mismatch]) -> None:
        self.outcome = outcome
        self.start = start
        self.mismatches = mismatches

    def offset(self, moment: datetime.datetime) -> str:
        """Return a moment as the test writes it: the duration since the start."""
        seconds = (moment - self.start).total_seconds()
        return duration_text(seconds) if seconds >= 0 else f"{duration_text(-seconds)} before the start"

    def mismatch(self, what: str, line: int, expected: str, got: str) -> None:
        self.mismatches.append(Mismatch(f"{what} (line {line})", expected, got))

    # ------------------------------------------------------------ events

    def event_had_effect(self, event: ir.ScenarioEvent) -> None:
        """Report an acknowledgement or resolution by a person that found no incident to act on."""
        if event.by is None:
            return
        at = self.start + datetime.timedelta(seconds=event.at_s)
        acknowledges = event.kind is ir.ScenarioEventKind.ACKNOWLEDGE
        action = "acknowledge" if acknowledges else "resolve"
        # One outcome per picked alert: the event had an effect when any of them found an incident.
        outcomes = [item for item in self.outcome.actions if (item.at, item.action, item.by) == (at, action, event.by)]
        if outcomes and all(item.incident is None for item in outcomes):
            what = f'{"ack" if acknowledges else "resolve"} by "{event.by}"'
            self.mismatch(
                what, event.line, f"an incident to {action} at {duration_text(event.at_s)}", "no incident contains the alert"
            )

    # ------------------------------------------------------------ expectations

    def incidents(self, expectation: ir.ScenarioExpectation) -> None:
        found = self.outcome.incidents
        if len(found) != expectation.count:
            titles = ", ".join(f"`{incident.title}`" for incident in found)
            got = f"{len(found)}" + (f" ({titles})" if titles else "")
            self.mismatch("incidents", expectation.line, str(expectation.count), got)

    def _pages_of(self, expectation: ir.ScenarioExpectation) -> list[Page]:
        return [
            page
            for page in self.outcome.pages
            if page.receiver == expectation.receiver and expectation.event in (None, page.event)
        ]

    def page(self, expectation: ir.ScenarioExpectation) -> None:
        at = None if expectation.at_s is None else self.start + datetime.timedelta(seconds=expectation.at_s)
        if any(at in (None, page.at) for page in self._pages_of(expectation)):
            return
        what = " ".join(filter(None, ("page", expectation.receiver, expectation.event)))
        expected = "a page" if expectation.at_s is None else f"at {duration_text(expectation.at_s)}"
        # The pages of every event, so that a page at the right time for another event shows.
        pages = [page for page in self.outcome.pages if page.receiver == expectation.receiver]
        self.mismatch(what, expectation.line, expected, self._pages_text(pages))

    def no_page(self, expectation: ir.ScenarioExpectation) -> None:
        pages = self._pages_of(expectation)
        if pages:
            what = " ".join(filter(None, ("no page", expectation.receiver, expectation.event)))
            self.mismatch(what, expectation.line, "no page", self._pages_text(pages))

    def _pages_text(self, pages: Iterable[Page]) -> str:
        moments = sorted({(page.at, page.event) for page in pages})
        if not moments:
            return "no page"
        return "at " + ", ".join(f"{self.offset(at)} ({event})" for at, event in moments)

    def escalation(self, expectation: ir.ScenarioExpectation) -> None:
        steps = self.outcome.escalations
        matching = [step for step in steps if step.level == expectation.level]
        if expectation.receiver is not None:
            matching = [step for step in matching if step.target == expectation.receiver]
        if expectation.at_s is not None:
            at = self.start + datetime.timedelta(seconds=expectation.at_s)
            matching = [step for step in matching if step.at == at]
        if matching:
            return
        expected = f"level {expectation.level}"
        if expectation.receiver is not None:
            expected += f" to {expectation.receiver}"
        if expectation.at_s is not None:
            expected += f" at {duration_text(expectation.at_s)}"
        self.mismatch(f"escalation level {expectation.level}", expectation.line, expected, self._escalations_text(steps))

    def no_escalation(self, expectation: ir.ScenarioExpectation) -> None:
        steps = self.outcome.escalations
        if steps:
            self.mismatch("no escalation", expectation.line, "no escalation", self._escalations_text(steps))

    def _escalations_text(self, steps: Iterable[EscalationStep]) -> str:
        parts = []
        for step in steps:
            target = f" to {step.target}" if step.target else ""
            parts.append(f"level {step.level} at {self.offset(step.at)} ({step.action}{target})")
        return ", ".join(parts) if parts else "no escalation"

    def runbook(self, expectation: ir.ScenarioExpectation) -> None:
        runs = [run for run in self.outcome.runbooks if run.runbook == expectation.runbook]
        what = f"runbook {expectation.runbook}"
        started = [run for run in runs if run.status != "refused"]
        if not started:
            refused = [f"refused at {self.offset(run.at)}: {run.detail}" for run in runs]
            self.mismatch(what, expectation.line, "a run", "; ".join(refused) if refused else "no run")
            return
        if expectation.at_s is not None:
            at = self.start + datetime.timedelta(seconds=expectation.at_s)
            if not any(run.at == at for run in started):
                self.mismatch(what, expectation.line, f"a run at {duration_text(expectation.at_s)}", self._runs_text(started))
                return
            started = [run for run in started if run.at == at]
        if expectation.path is not None and not any(list(run.path) == expectation.path for run in started):
            got = "; ".join(self._path_text(run) for run in started)
            self.mismatch(what, expectation.line, f"path {_names(expectation.path)}", got)

    def _path_text(self, run: RunbookRun) -> str:
        text = f"path {_names(run.path)}"
        if run.undecided:
            text += f" ({_names(run.undecided)} decided only by a real run)"
        return text

    def no_runbook(self, expectation: ir.ScenarioExpectation) -> None:
        runs = [run for run in self.outcome.runbooks if run.runbook == expectation.runbook and run.status != "refused"]
        if runs:
            self.mismatch(f"no runbook {expectation.runbook}", expectation.line, "no run", self._runs_text(runs))

    def _runs_text(self, runs: list[RunbookRun]) -> str:
        moments = ", ".join(self.offset(run.at) for run in runs)
        return f"a run at {moments}" if len(runs) == 1 else f"runs at {moments}"


def _names(names: Iterable[str]) -> str:
    return "[" + ", ".join(names) + "]"


_CHECKS: dict[Kind, Callable[[_Check, ir.ScenarioExpectation], None]] = {
    Kind.INCIDENTS: _Check.incidents,
    Kind.PAGE: _Check.page,
    Kind.NO_PAGE: _Check.no_page,
    Kind.ESCALATION: _Check.escalation,
    Kind.NO_ESCALATION: _Check.no_escalation,
    Kind.RUNBOOK: _Check.runbook,
    Kind.NO_RUNBOOK: _Check.no_runbook,
}
