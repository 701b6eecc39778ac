"""Run the `test` blocks of a ruleset: each one an alert and what the policy must do with it.

A test passes when every expectation it states holds:

- `expect receivers`: the receivers the route tree gives, in Alertmanager's
  order. With `at`, the receivers of routes that are muted at that moment, or
  outside their active time, are left out. Without `at`, time intervals play
  no part, as in `amtool config routes test`.
- `expect inhibited` / `expect not inhibited`: whether an inhibit rule
  silences the alert, given the `also_firing` alerts.
- `expect severity`: the level of the severity policy (`severity_of`).
- `expect runbooks`: the ids of the runbooks that start, in any order.
- `expect group_by`: the grouping labels of every route that receives the
  alert, in any order.

Scenario tests (`TestCase.scenario`) need the runtime's simulation, which the
compiler does not import: `run_tests` takes the function that runs them, and
without one it reports them as skipped.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from xml.etree import ElementTree

from compiler import ir
from compiler.evaluate import TimeIntervals, parse_moment, runbooks_triggered, severity_of
from compiler.router import Router, inhibitions


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One expectation that did not hold: what was expected and what the rules gave."""

    expectation: str
    expected: str
    got: str

    def describe(self) -> str:
        return f"{self.expectation}: expected {self.expected}, got {self.got}"


@dataclass(slots=True)
class CaseResult:
    """The outcome of one test block. `error` is set when the test itself cannot run, `skipped` when it was not run."""

    case: ir.TestCase
    mismatches: list[Mismatch] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return not self.mismatches and self.error is None and self.skipped is None

    @property
    def location(self) -> str:
        return f"{self.case.path}:{self.case.line}"

    def problems(self) -> list[str]:
        """Return one line per reason the test failed."""
        return ([self.error] if self.error else []) + [mismatch.describe() for mismatch in self.mismatches]


@dataclass(slots=True)
class RunReport:
    """The results of every test block, in the order the rules declare them."""

    results: list[CaseResult]

    @property
    def passed(self) -> int:
        return sum(result.passed for result in self.results)

    @property
    def skipped(self) -> int:
        return sum(result.skipped is not None for result in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed - self.skipped

    def summary(self) -> str:
        text = f"{self.passed} passed, {self.failed} failed"
        return text + (f", {self.skipped} skipped" if self.skipped else "")

    def render_text(self, *, verbose: bool = False) -> str:
        """Return the failures with their locations (and the passes when `verbose`), then the summary line."""
        lines: list[str] = []
        for result in self.results:
            if result.passed:
                if verbose:
                    lines.append(f"{result.location}: ok: {result.case.name}")
                continue
            if result.skipped is not None:
                if verbose:
                    lines.append(f"{result.location}: skipped: {result.case.name} ({result.skipped})")
                continue
            lines.append(f"{result.location}: FAILED: {result.case.name}")
            lines.extend(f"  {problem}" for problem in result.problems())
        lines.append(self.summary())
        return "\n".join(lines) + "\n"

    def junit_xml(self, suite: str = "irules") -> str:
        """Return a JUnit XML report: one test case per test block, with a failure element for each failed one."""
        errors = sum(result.error is not None for result in self.results)
        failures = self.failed - errors
        counts = {"tests": str(len(self.results)), "failures": str(failures), "errors": str(errors)}
        if self.skipped:
            counts["skipped"] = str(self.skipped)
        root = ElementTree.Element("testsuites", {"name": suite, **counts})
        suite_element = ElementTree.SubElement(root, "testsuite", {"name": suite, **counts})
        for result in self.results:
            case = ElementTree.SubElement(
                suite_element,
                "testcase",
                {
                    "name": result.case.name,
                    "classname": result.case.path,
                    "file": result.case.path,
                    "line": str(result.case.line),
                },
            )
            if result.passed:
                continue
            if result.skipped is not None:
                ElementTree.SubElement(case, "skipped", {"message": result.skipped})
                continue
            kind = "error" if result.error is not None else "failure"
            problems = result.problems()
            detail = ElementTree.SubElement(case, kind, {"message": problems[0], "type": kind})
            detail.text = f"{result.location}: {result.case.name}\n" + "\n".join(problems) + "\n"
        ElementTree.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


ScenarioRunner = Callable[[ir.Ruleset, ir.TestCase], CaseResult]


def run_tests(ruleset: ir.Ruleset, run_scenario: ScenarioRunner | None = None) -> RunReport:
    """Run every test block of `ruleset`, the scenario tests through `run_scenario`."""
    router = Router(ruleset.route)
    intervals = TimeIntervals(ruleset.time_intervals)
    results = []
    for case in ruleset.tests:
        if case.scenario is None:
            results.append(run_test(ruleset, case, router, intervals))
        elif run_scenario is None:
            results.append(CaseResult(case, skipped="scenario tests run on the simulation of `irules test`"))
        else:
            results.append(run_scenario(ruleset, case))
    return RunReport(results)


def run_test(
    ruleset: ir.Ruleset, case: ir.TestCase, router: Router | None = None, intervals: TimeIntervals | None = None
) -> CaseResult:
    """Run one test block and compare each of its expectations with what the rules do."""
    router = router or Router(ruleset.route)
    intervals = intervals or TimeIntervals(ruleset.time_intervals)
    result = CaseResult(case)
    moment = None
    if case.at is not None:
        try:
            moment = parse_moment(case.at)
        except ValueError:
            result.error = f"`at` is not an ISO 8601 date and time: {case.at!r}"
            return result

    routes = router.match(case.labels)
    if case.expect_receivers is not None:
        receivers = [route.receiver for route in routes if not _silenced(route, moment, intervals)]
        _expect(result, _at_line(case, "receivers"), _names(case.expect_receivers), _names(receivers))
    if case.expect_inhibited is not None:
        _expect_inhibition(result, ruleset, case)
    if case.expect_severity is not None:
        decision = severity_of(ruleset, case.labels, case.annotations)
        if decision.level != case.expect_severity:
            result.mismatches.append(Mismatch(_at_line(case, "severity"), case.expect_severity, decision.describe()))
    if case.expect_runbooks is not None:
        started = runbooks_triggered(ruleset, case.labels, case.annotations)
        _expect(result, _at_line(case, "runbooks"), _names(sorted(case.expect_runbooks)), _names(sorted(started)))
    if case.expect_group_by is not None:
        _expect_group_by(result, case, routes)
    return result


def _at_line(case: ir.TestCase, expectation: str) -> str:
    """Return the expectation's name with the line of its `expect`, as scenario tests show it: `severity (line 12)`."""
    line = case.expect_lines.get(expectation)
    return f"{expectation} (line {line})" if line else expectation


def _expect_inhibition(result: CaseResult, ruleset: ir.Ruleset, case: ir.TestCase) -> None:
    found = inhibitions(case.labels, case.also_firing, ruleset.inhibit_rules)
    if bool(found) == case.expect_inhibited:
        return
    expected = "inhibited" if case.expect_inhibited else "not inhibited"
    if not found:
        got = "not inhibited" if case.also_firing else "not inhibited (the test has no `also_firing` alert)"
    else:
        got = f"inhibited by inhibit rule {found[0].rule_index + 1} through {_labels_text(found[0].source)}"
    result.mismatches.append(Mismatch(_at_line(case, "inhibition"), expected, got))


def _silenced(route: ir.Route, moment: datetime.datetime | None, intervals: TimeIntervals) -> bool:
    return moment is not None and intervals.silence(route, moment) is not None


def _expect_group_by(result: CaseResult, case: ir.TestCase, routes: list[ir.Route]) -> None:
    expected = case.expect_group_by or []
    wanted = set(expected)
    differing = [route for route in routes if set(route.group_by) != wanted]
    if differing:
        got = "; ".join(f"{_names(route.group_by)} on route {route.id}" for route in differing)
        result.mismatches.append(Mismatch(_at_line(case, "group_by"), _names(expected), got))


def _expect(result: CaseResult, expectation: str, expected: str, got: str) -> None:
    if expected != got:
        result.mismatches.append(Mismatch(expectation, expected, got))


def _names(names: Iterable[str]) -> str:
    return "[" + ", ".join(names) + "]"


def _labels_text(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{name}="{value}"' for name, value in sorted(labels.items())) + "}"
