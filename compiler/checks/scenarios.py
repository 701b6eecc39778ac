"""Scenario tests: a start, events in time, and expectations that name what exists.

A test block is a scenario when it has an event (`fire`, `resolve`, `ack`),
an `until` or a scenario expectation (`expect incidents`, `expect page`, ...).
Times are offsets from the test's `at` or moments of their own. They may be
written in any order, but none lies before the start or after `until`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from compiler import ast
from compiler.checks.context import Context
from compiler.codes import Code
from compiler.diagnostics import Label
from compiler.suggest import closest
from compiler.transform import duration_text

CODES = {
    "IR1101": Code(
        "single-alert line in a scenario test",
        "A test block is either one alert and what the rules do with it (`alert`,\n"
        "`also_firing`, `expect receivers`, ...), or a scenario of alerts over time (`fire`,\n"
        "`resolve`, `ack`, `expect page`, ...). One block cannot be both: move the\n"
        "single-alert lines into a `test` block of their own.",
    ),
    "IR1102": Code(
        "scenario test fires no alert",
        "A scenario runs the alerts it fires through the rules. Without a `fire` line,\n"
        'nothing happens; add one such as `fire { alertname = "X" } at 0m`.',
    ),
    "IR1103": Code(
        "scenario test without a start",
        "Scenario times are offsets from the test's `at`, such as `at\n"
        '"2026-03-02T10:00:00Z"`, so a scenario needs one. Time intervals and the time zone\n'
        "of the rules decide what happens at that moment. An `at` written right after an\n"
        "`expect page`, `expect escalation` or `expect runbook` belongs to that expectation:\n"
        "write the test's `at` first.",
    ),
    "IR1104": Code(
        "invalid moment",
        "A moment is written in ISO 8601 with a date and a time, such as\n"
        '`"2026-03-02T10:00:00Z"` or `"2026-03-02T11:00:00+01:00"`; a moment without an\n'
        "offset is UTC.",
    ),
    "IR1105": Code(
        "time before the start of the scenario",
        "Every event and expectation of a scenario happens at or after the test's `at`.\n"
        "Offsets count from that moment and cannot be negative, and a moment written as a\n"
        "date must not lie before it. Move the start earlier, or the event later.",
    ),
    "IR1106": Code(
        "time after the end of the scenario",
        "A scenario runs until its `until` offset. An event or expectation later than\n"
        "that would never be reached: raise `until`, or leave it out so the scenario runs\n"
        "until its latest time.",
    ),
    "IR1108": Code(
        "unknown notification event",
        "`expect page RECEIVER EVENT` tests the messages of one event: `opened`, `updated`,\n"
        "`acknowledged`, `resolved`, `escalated` or `reminder`, the values that templates read\n"
        "in `event`. Leave the event out to accept a message of any event.",
    ),
    "IR1107": Code(
        "event picks no fired alert",
        "`ack` and `resolve` pick the alerts whose labels include every label they name.\n"
        "When no `fire` of the scenario has those labels, the event acts on nothing. Name\n"
        "labels of an alert that the scenario fires.",
    ),
}

# Test lines that belong to single-alert tests only.
_SINGLE_ALERT_KEYS = frozenset(
    {
        "alert",
        "annotations",
        "also_firing",
        "expect receivers",
        "expect severity",
        "expect inhibited",
        "expect not inhibited",
        "expect runbooks",
        "expect group_by",
    }
)
# The argument index of the time of each expectation that takes one.
_EXPECTATION_TIME = {"expect page": 2, "expect escalation": 2, "expect runbook": 2}
# The events of notifications, as templates read them in `event`.
PAGE_EVENTS = ("opened", "updated", "acknowledged", "resolved", "escalated", "reminder")


def parse_moment(text: str) -> datetime.datetime | None:
    """Return an ISO 8601 date and time, UTC when it has no offset, or None when `text` is not one."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if len(text.strip()) <= 10:
        return None  # A date alone is not a moment.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def moment_seconds(moment: ast.Duration | ast.Str, start: datetime.datetime) -> float | None:
    """Return the seconds from `start` to a scenario time, or None for a date that does not parse."""
    if isinstance(moment, ast.Duration):
        return moment.seconds
    parsed = parse_moment(moment.value)
    return None if parsed is None else (parsed - start).total_seconds()


def start_of(test: ast.Test) -> ast.Str | None:
    """Return the test's `at`, the start of a scenario."""
    for item in test.items:
        if isinstance(item, ast.TestItem) and item.key == "at":
            return item.args[0]
    return None


def scenario_times(test: ast.Test) -> Iterator[tuple[ast.Node, ast.Duration | ast.Str]]:
    """Yield each event and expectation of a scenario that has a time, with that time."""
    for item in test.items:
        if isinstance(item, ast.ScenarioEvent):
            yield item, item.at
        elif item.key in _EXPECTATION_TIME and item.args[_EXPECTATION_TIME[item.key]] is not None:
            yield item, item.args[_EXPECTATION_TIME[item.key]]


def until_of(test: ast.Test) -> ast.TestItem | None:
    return next((item for item in test.items if isinstance(item, ast.TestItem) and item.key == "until"), None)


def _scenarios(context: Context) -> Iterator[ast.Test]:
    for test in context.symbols.tests:
        if test.scenario_items:
            yield test


def _lines(test: ast.Test, *keys: str) -> Iterator[ast.TestItem]:
    for item in test.items:
        if isinstance(item, ast.TestItem) and item.key in keys:
            yield item


def _events(test: ast.Test, *kinds: str) -> Iterator[ast.ScenarioEvent]:
    for item in test.items:
        if isinstance(item, ast.ScenarioEvent) and item.kind in kinds:
            yield item


def _describe(item: ast.TestItem | ast.ScenarioEvent) -> tuple[str, ast.Span]:
    if isinstance(item, ast.ScenarioEvent):
        return item.kind, item.kind_span
    return item.key, item.key_span


def check_scenario_shape(context: Context) -> None:
    """Report single-alert lines in a scenario, and a scenario without a `fire`."""
    for test in _scenarios(context):
        marker, marker_span = _describe(test.scenario_items[0])
        for item in _lines(test, *_SINGLE_ALERT_KEYS):
            context.sink.error(
                "IR1101",
                f"`{item.key}` cannot be used in a scenario test",
                item.key_span,
                label="this line tests a single alert",
                labels=(Label(marker_span, f"`{marker}` makes this test a scenario"),),
                help="move the single-alert lines into a `test` block of their own",
            )
        if next(_events(test, "fire"), None) is None:
            context.sink.error(
                "IR1102",
                f"scenario test `{test.title.value}` fires no alert",
                test.title.span,
                label="nothing happens in this scenario",
                labels=(Label(marker_span, f"`{marker}` makes this test a scenario"),),
                help='add an alert that fires, such as `fire { alertname = "X" } at 0m`',
            )


def check_scenario_start(context: Context) -> None:
    """Report a scenario without a valid `at`, moments that do not parse, and a repeated `at` or `until`."""
    for test in context.symbols.tests:
        _report_repeats(context, test)
    for test in _scenarios(context):
        start = start_of(test)
        if start is None:
            context.sink.error(
                "IR1103",
                f"scenario test `{test.title.value}` has no start",
                test.title.span,
                label="times in this test count from its `at`",
                help='add `at "2026-03-02T10:00:00Z"` as the first line of the test',
            )
        elif parse_moment(start.value) is None:
            _invalid_moment(context, start)
        for _item, moment in scenario_times(test):
            if isinstance(moment, ast.Str) and parse_moment(moment.value) is None:
                _invalid_moment(context, moment)


def _invalid_moment(context: Context, moment: ast.Str) -> None:
    context.sink.error(
        "IR1104",
        f"`{moment.value}` is not an ISO 8601 date and time",
        moment.span,
        label="expected a moment such as `2026-03-02T10:00:00Z`",
        help='write the date, `T`, the time and an offset: `"2026-03-02T10:00:00Z"`',
    )


def _report_repeats(context: Context, test: ast.Test) -> None:
    for key in ("at", "until"):
        lines = list(_lines(test, key))
        for again in lines[1:]:
            context.sink.error(
                "IR0315",
                f"`{key}` is set twice in test `{test.title.value}`",
                again.key_span,
                label="set again here",
                labels=(Label(lines[0].key_span, "first set here"),),
                help="keep one of them",
            )


def check_scenario_times(context: Context) -> None:
    """Report times before the start and after `until`."""
    for test in _scenarios(context):
        start = start_of(test)
        begin = None if start is None else parse_moment(start.value)
        if start is None or begin is None:
            continue
        timed = [(item, moment, moment_seconds(moment, begin)) for item, moment in scenario_times(test)]
        until = until_of(test)
        if until is not None:
            timed.append((until, until.args[0], moment_seconds(until.args[0], begin)))
        for item, moment, seconds in timed:
            if seconds is not None and seconds < 0:
                what, _span = _describe(item)
                context.sink.error(
                    "IR1105",
                    f"`{what}` is {duration_text(-seconds)} before the start of the scenario",
                    moment.span,
                    label="before the test's `at`",
                    labels=(Label(start.span, "the scenario starts here"),),
                    help="move the test's `at` earlier, or this time later",
                )
        end = timed.pop()[2] if until is not None else None
        if until is not None and end is not None and end >= 0:
            _check_until(context, until, end, timed)


def _check_until(context: Context, until: ast.TestItem, end: float, timed: list[tuple[ast.Node, ast.Node, float | None]]) -> None:
    for item, moment, seconds in timed:
        if seconds is not None and seconds > end:
            what, _span = _describe(item)
            context.sink.error(
                "IR1106",
                f"`{what}` at {duration_text(seconds)} is after the end of the scenario",
                moment.span,
                label=f"the scenario ends at {duration_text(end)}",
                labels=(Label(until.args[0].span, "the end is set here"),),
                help=f"raise `until` to {duration_text(seconds)} or more, or leave it out",
            )


def check_scenario_events(context: Context) -> None:
    """Report an `ack` or `resolve` whose labels are not those of any fired alert."""
    for test in _scenarios(context):
        fired = [{pair.name.value: pair.value.value for pair in event.labels} for event in _events(test, "fire")]
        if not fired:
            continue
        for event in _events(test, "ack", "resolve"):
            named = {pair.name.value: pair.value.value for pair in event.labels}
            if any(named.items() <= labels.items() for labels in fired):
                continue
            context.sink.error(
                "IR1107",
                f"`{event.kind}` picks no alert that the scenario fires",
                event.labels_span,
                label="no `fire` of this test has all these labels",
                help="name labels of a fired alert, such as its `alertname`",
            )


def check_scenario_references(context: Context) -> None:
    """Resolve the receivers, runbooks and steps that scenario expectations name."""
    symbols = context.symbols
    for test in _scenarios(context):
        for item in _lines(test, "expect page", "expect no page"):
            context.resolve("receiver", item.args[0], symbols.receivers, what="test")
            event = item.args[1]
            if event is not None and event.value not in PAGE_EVENTS:
                _unknown_event(context, event)
        for item in _lines(test, "expect escalation"):
            if item.args[1] is not None:
                context.resolve("receiver", item.args[1], symbols.receivers, what="test")
        for item in _lines(test, "expect runbook", "expect no runbook"):
            runbook = context.resolve("runbook", item.args[0], symbols.runbooks, what="test")
            path = item.args[1] if item.key == "expect runbook" else None
            if isinstance(runbook, ast.Runbook) and path is not None:
                _check_path(context, runbook, path)


def _unknown_event(context: Context, event: ast.Name) -> None:
    suggestion = closest(event.value, PAGE_EVENTS)
    known = ", ".join(f"`{name}`" for name in PAGE_EVENTS)
    context.sink.error(
        "IR1108",
        f"unknown notification event `{event.value}`",
        event.span,
        label="not an event of a notification",
        help=f"an event with a similar name exists: `{suggestion}`" if suggestion else f"the events are {known}",
    )


def _check_path(context: Context, runbook: ast.Runbook, path: ast.NameList) -> None:
    steps = {step.name.value for step in _steps(runbook)}
    for name in path.items:
        if name.value not in steps:
            context.unknown("step", name.value, name.span, sorted(steps), what=f"runbook `{runbook.name.value}`")


def _steps(runbook: ast.Runbook) -> Iterator[ast.Step]:
    for item in runbook.items:
        if isinstance(item, ast.Step):
            yield item
        elif isinstance(item, ast.Parallel):
            yield from item.steps


CHECKS = [
    check_scenario_shape,
    check_scenario_start,
    check_scenario_times,
    check_scenario_events,
    check_scenario_references,
]
