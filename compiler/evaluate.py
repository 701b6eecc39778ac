"""Evaluation on the IR: conditions, severity, runbook triggers, group keys and time intervals.

The daemon has only `ruleset.json`, so everything here reads the IR and
nothing else. Conditions follow the operator rules of `compiler.expr`
(its `compare` and `lookup`); this module only walks the IR's JSON form of
an expression. Routing and inhibition live in `compiler.router`.

Example:
    decision = severity_of(ruleset, {"alertname": "NodeDown", "severity": "critical"}, {})
    decision.level, decision.rule_index, decision.source  # ("critical", 0, "rule")
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from compiler import ir, timeintervals
from compiler.expr import compare, is_true, lookup
from compiler.router import Labels, all_match, fingerprint

# ---------------------------------------------------------------- expressions


def evaluate_expression(expr: ir.Expr, values: Mapping[str, object]) -> object:
    """Return the value of an IR expression tree on `values`, with the rules of `compiler.expr.evaluate`.

    `values` has the keys `labels`, `annotations`, `alert`, `incident`,
    `service`, `steps`, `body` and `params`, each optional. A missing field
    evaluates to `compiler.expr.MISSING`.
    """
    if "path" in expr:
        return _path_value(expr["path"], values)
    if "op" in expr:
        left = evaluate_expression(expr["left"], values)
        right = expr["right"]
        if expr["op"] in ("=~", "!~"):
            # The pattern is always a string literal of the rules; the checker rejects any other.
            pattern = right.get("value") if right.get("type") == "string" else None
            return compare(expr["op"], left, pattern)
        return compare(expr["op"], left, evaluate_expression(right, values))
    if "and" in expr:
        return all(is_true(evaluate_expression(item, values)) for item in expr["and"])
    if "or" in expr:
        return any(is_true(evaluate_expression(item, values)) for item in expr["or"])
    if "not" in expr:
        return not is_true(evaluate_expression(expr["not"], values))
    if "list" in expr:
        return [evaluate_expression(item, values) for item in expr["list"]]
    assert "value" in expr, f"not an IR expression: {sorted(expr)}"
    if expr.get("type") == "duration":
        return datetime.timedelta(seconds=expr["value"])
    return expr["value"]


def condition_holds(expr: ir.Expr, values: Mapping[str, object]) -> bool:
    """Return whether the IR condition `expr` is true on `values`."""
    return is_true(evaluate_expression(expr, values))


def _path_value(parts: list[str], values: Mapping[str, object]) -> object:
    # Lowering writes an action parameter as ["params", name] and a bare label as ["label", name].
    if len(parts) == 2 and parts[0] == "params":
        return lookup(parts[1:], values)
    return lookup(parts, values)


# ---------------------------------------------------------------- the data an alert brings


def service_for(ruleset: ir.Ruleset, labels: Labels) -> ir.Service | None:
    """Return the service whose `match` the labels satisfy: the first by name, or `None`."""
    return next((service for service in ruleset.services if service.matchers and all_match(service.matchers, labels)), None)


def alert_values(
    labels: Labels,
    annotations: Mapping[str, str],
    service: ir.Service | None,
    incident: Mapping[str, object] | None = None,
    *,
    alert_fingerprint: str | None = None,
) -> dict[str, Any]:
    """Return the `values` tree that conditions read for one firing alert.

    `alert_fingerprint` is the alert's fingerprint when the caller knows it; else it is computed from the labels.
    """
    values: dict[str, Any] = {
        "labels": dict(labels),
        "annotations": dict(annotations),
        "alert": {
            "name": labels.get("alertname", ""),
            "status": "firing",
            "fingerprint": fingerprint(labels) if alert_fingerprint is None else alert_fingerprint,
        },
    }
    if service is not None:
        values["service"] = {"name": service.name, "tier": service.tier, "team": service.team}
    if incident is not None:
        values["incident"] = dict(incident)
    return values


# ---------------------------------------------------------------- severity


@dataclass(frozen=True, slots=True)
class SeverityDecision:
    """The level the severity policy gives an alert, and what decided it.

    `source` is `rule` when the rule at `rule_index` matched. It is `fallback`
    when no rule matched and the policy names a fixed level (or none), and
    `classify` when no rule matched and the classifier decides. With
    `classify`, `level` is the classifier's fallback level, if any.
    """

    level: str | None
    rule_index: int | None
    source: str

    def describe(self) -> str:
        if self.source == "classify":
            return f"classifier (fallback {self.level})" if self.level else "classifier"
        return self.level or "none"


def severity_of(
    ruleset: ir.Ruleset,
    labels: Labels,
    annotations: Mapping[str, str],
    service: ir.Service | None = None,
    *,
    alert_fingerprint: str | None = None,
) -> SeverityDecision:
    """Apply the severity rules in order: the first whose condition is true sets the level.

    `service` defaults to the one the labels select (`service_for`); `alert_fingerprint`
    to the fingerprint of the labels.
    """
    policy = ruleset.severity
    if service is None:
        service = service_for(ruleset, labels)
    values = alert_values(labels, annotations, service, alert_fingerprint=alert_fingerprint)
    for index, rule in enumerate(policy.rules):
        if condition_holds(rule.when, values):
            return SeverityDecision(rule.level, index, "rule")
    return SeverityDecision(policy.fallback_level, None, "classify" if policy.classify else "fallback")


# ---------------------------------------------------------------- runbooks


def triggered_runbooks(
    ruleset: ir.Ruleset,
    labels: Labels,
    annotations: Mapping[str, str],
    *,
    severity: str | None = None,
    service: ir.Service | None = None,
) -> list[ir.Runbook]:
    """Return the runbooks whose `when` is true for a new incident of this alert, in id order.

    A runbook without `when` never starts by itself. `severity` defaults to
    what `severity_of` decides, and `service` to the one the labels select.
    The incident is fresh: status `triggered`, age 0, one alert.
    """
    if service is None:
        service = service_for(ruleset, labels)
    if severity is None:
        severity = severity_of(ruleset, labels, annotations, service).level
    incident = {
        "severity": severity,
        "status": "detected",
        "age": datetime.timedelta(0),
        "alert_count": 1,
        "title": labels.get("alertname", ""),
        "service": service.name if service else None,
        "team": service.team if service else None,
    }
    values = alert_values(labels, annotations, service, incident)
    return [runbook for runbook in ruleset.runbooks if runbook.when is not None and condition_holds(runbook.when, values)]


def runbooks_triggered(
    ruleset: ir.Ruleset,
    labels: Labels,
    annotations: Mapping[str, str],
    *,
    severity: str | None = None,
    service: ir.Service | None = None,
) -> list[str]:
    """Return the ids of the runbooks this alert starts. `triggered_runbooks` returns the runbooks, with `auto`."""
    return [runbook.id for runbook in triggered_runbooks(ruleset, labels, annotations, severity=severity, service=service)]


# ---------------------------------------------------------------- group keys
#
# Alertmanager 0.25 names an aggregation group `ROUTE_KEY:GROUP_LABELS`
# (`dispatch.go`, `aggrGroup.GroupKey`; `route.go`, `Route.Key`):
#
# - ROUTE_KEY is every route from the root down, each written as its matchers
#   in braces, joined by `/`. The root has no matchers, so a child of the root
#   is `{}/{severity="critical"}`. Matchers are sorted by name, then value,
#   then operator (`=`, `!=`, `=~`, `!~`). Each is written `name<op>"value"`
#   with `\`, `"` and newlines escaped, and a comma without a space separates them.
# - GROUP_LABELS are the alert's labels named in `group_by` (all of them for
#   `...`), each `name="value"` with Go's string quoting, sorted as text and
#   joined by a comma and a space: `{alertname="X", cluster="c"}`. Absent
#   labels are left out, and so are empty ones, which Alertmanager drops when
#   it receives an alert.

GROUP_BY_ALL = "..."
_MATCH_ORDER = {ir.MatchOp.EQUAL: 0, ir.MatchOp.NOT_EQUAL: 1, ir.MatchOp.REGEX: 2, ir.MatchOp.NOT_REGEX: 3}
_MATCHER_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})
_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def route_path(root: ir.Route, route_id: str) -> list[ir.Route]:
    """Return the routes from `root` down to the route with `route_id` (such as `0.2.1`)."""
    path = [root]
    for position in route_id.split(".")[1:]:
        path.append(path[-1].routes[int(position)])
    return path


def route_key(path: Sequence[ir.Route]) -> str:
    """Return Alertmanager's key of the last route of `path` (root first)."""
    return "/".join(_matchers_text(route.matchers) for route in path)


def group_labels(route: ir.Route, labels: Labels) -> dict[str, str]:
    """Return the labels that name the alert's group on `route`."""
    everything = GROUP_BY_ALL in route.group_by
    return {name: value for name, value in labels.items() if value and (everything or name in route.group_by)}


def group_key(path: Sequence[ir.Route], labels: Labels) -> str:
    """Return Alertmanager's group key of an alert on the last route of `path` (root first, as `Router.trace` gives)."""
    grouped = group_labels(path[-1], labels)
    pairs = sorted(f"{name}={_go_quote(value)}" for name, value in grouped.items())
    return f"{route_key(path)}:{{{', '.join(pairs)}}}"


def _matchers_text(matchers: Iterable[ir.Matcher]) -> str:
    ordered = sorted(matchers, key=lambda matcher: (matcher.name, matcher.value, _MATCH_ORDER[matcher.op]))
    return "{" + ",".join(f'{m.name}{m.op.value}"{m.value.translate(_MATCHER_ESCAPES)}"' for m in ordered) + "}"


def _go_quote(text: str) -> str:
    """Quote `text` as Go's `strconv.Quote` does."""
    parts = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            parts.append("\\" + char)
        elif char in _GO_ESCAPES:
            parts.append(_GO_ESCAPES[char])
        elif char.isprintable():
            parts.append(char)
        elif code < 0x80:
            parts.append(f"\\x{code:02x}")
        elif code < 0x10000:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    parts.append('"')
    return "".join(parts)


# ---------------------------------------------------------------- time intervals


def parse_moment(text: str) -> datetime.datetime:
    """Parse an ISO 8601 moment such as `2025-06-02T10:00:00+02:00`; one without an offset is UTC.

    Raises:
        ValueError: `text` is not an ISO 8601 date and time.
    """
    moment = datetime.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment


@dataclass(frozen=True, slots=True)
class Silence:
    """Why a route sends nothing at a moment: `muted` by one of `intervals`, or `inactive` outside all of them."""

    kind: str
    intervals: tuple[str, ...]

    def describe(self) -> str:
        names = ", ".join(f"`{name}`" for name in self.intervals)
        return f"muted during {names}" if self.kind == "muted" else f"outside its active time {names}"


class TimeIntervals:
    """The named time intervals of a ruleset, ready to test moments against."""

    def __init__(self, intervals: Iterable[ir.TimeInterval]) -> None:
        self._periods = {interval.name: [_period(period) for period in interval.periods] for interval in intervals}

    def contains(self, name: str, moment: datetime.datetime) -> bool:
        """Return whether the timezone-aware `moment` lies in the interval `name` (in any of its periods)."""
        return any(period.contains(moment) for period in self._periods[name])

    def silence(self, route: ir.Route, moment: datetime.datetime) -> Silence | None:
        """Return why `route` sends nothing at `moment`, as Alertmanager decides it, or `None` when it sends."""
        muting = tuple(name for name in route.mute_time_intervals if self.contains(name, moment))
        if muting:
            return Silence("muted", muting)
        active = route.active_time_intervals
        if active and not any(self.contains(name, moment) for name in active):
            return Silence("inactive", tuple(active))
        return None


def _period(period: ir.Period) -> timeintervals.Period:
    # A period without a location counts in UTC, as Alertmanager's does.
    return timeintervals.Period(
        times=tuple(timeintervals.TimeRange(item.start_minute, item.end_minute) for item in period.times),
        weekdays=tuple(timeintervals.parse_weekdays(text) for text in period.weekdays),
        days_of_month=tuple(timeintervals.parse_days_of_month(text) for text in period.days_of_month),
        months=tuple(timeintervals.parse_months(text) for text in period.months),
        years=tuple(timeintervals.parse_years(text) for text in period.years),
        location=period.location or "UTC",
    )
