"""`irules explain`: what the rules do with one alert, and why.

For each route that receives the alert it shows the path from the root,
with every matcher of each level and whether it matched, and the earlier
siblings that were passed over with the matcher that failed. Then the
receivers, the inhibitions (given other firing alerts), the severity with
the rule that set it, and the runbooks that would start.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runtime.commands.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    EnvOption,
    OutputFormat,
    PathArgument,
    fail_internal,
    require_path,
)

if TYPE_CHECKING:
    import datetime

    from compiler import ir

LabelArguments = Annotated[list[str] | None, typer.Argument(help="The alert's labels, each as label=value.")]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="The explanation as text or JSON.")]
AtOption = Annotated[
    str | None, typer.Option("--at", help="The moment, as ISO 8601 (2025-06-02T10:00:00+02:00), for time intervals.")
]
FiringOption = Annotated[
    list[str] | None, typer.Option("--firing", help="Another firing alert, as label=value,label=value; may repeat.")
]


class UsageError(ValueError):
    """A command-line argument that cannot be read."""


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)


def explain(
    path: PathArgument,
    labels: LabelArguments = None,
    env: EnvOption = None,
    output_format: FormatOption = OutputFormat.TEXT,
    at: AtOption = None,
    firing: FiringOption = None,
) -> None:
    """Explain what the rules do with an alert. Exit 0 when explained, 1 on errors in the rules, 2 on usage errors."""
    require_path(path)
    try:
        alert = parse_labels(labels or [])
        others = [parse_labels(item.split(",")) for item in firing or []]
        moment = _moment(at)
    except UsageError as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        status = _run(path, env, alert, others, moment, output_format)
    except Exception as error:
        fail_internal(error)
    raise typer.Exit(status)


def parse_labels(items: list[str]) -> dict[str, str]:
    """Read `label=value` items into a label set; the value may contain `=` and may be empty."""
    labels: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise UsageError(f"cannot read label {item!r}: write it as label=value")
        labels[name.strip()] = value
    return labels


def _moment(text: str | None) -> datetime.datetime | None:
    if text is None:
        return None
    from compiler.evaluate import parse_moment

    try:
        return parse_moment(text)
    except ValueError:
        raise UsageError(f"cannot read --at {text!r}: write an ISO 8601 moment such as 2025-06-02T10:00:00+02:00") from None


def _run(
    path: Path,
    env: str | None,
    alert: dict[str, str],
    others: list[dict[str, str]],
    moment: datetime.datetime | None,
    output_format: OutputFormat,
) -> int:
    from compiler.api import check_path
    from compiler.diagnostics import Severity, render_text

    result = check_path(path, env)
    if result.has_errors:
        errors = [item for item in result.diagnostics if item.severity is Severity.ERROR]
        sys.stderr.write(render_text(errors, result.project.sources))
        return EXIT_PROBLEMS
    explanation = explain_alert(result.ruleset(), alert, firing=others, moment=moment)
    if output_format is OutputFormat.JSON:
        sys.stdout.write(json.dumps(explanation, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_explanation(explanation))
    return EXIT_OK


# ---------------------------------------------------------------- the explanation as data


def explain_alert(
    ruleset: ir.Ruleset,
    labels: Mapping[str, str],
    *,
    firing: list[dict[str, str]] | None = None,
    moment: datetime.datetime | None = None,
) -> dict[str, Any]:
    """Return everything `explain` shows about an alert with `labels`, as plain JSON-ready data."""
    from compiler.evaluate import TimeIntervals, group_key, severity_of, triggered_runbooks
    from compiler.router import Router, inhibitions

    intervals = TimeIntervals(ruleset.time_intervals)
    deliveries = []
    for path in Router(ruleset.route).trace(labels):
        route = path[-1]
        silence = intervals.silence(route, moment) if moment is not None else None
        deliveries.append(
            {
                "route": route.id,
                "receiver": route.receiver,
                "levels": [_level(path, depth, labels) for depth in range(len(path))],
                "unmatched_children": [child.id for child in route.routes],
                "group_by": list(route.group_by),
                "group_key": group_key(path, labels),
                "silenced": silence.describe() if silence else None,
            }
        )
    found = inhibitions(labels, firing or [], ruleset.inhibit_rules)
    severity = severity_of(ruleset, labels, {})
    return {
        "labels": dict(sorted(labels.items())),
        "at": moment.isoformat() if moment is not None else None,
        "routes": deliveries,
        "receivers": [delivery["receiver"] for delivery in deliveries],
        "notified": [delivery["receiver"] for delivery in deliveries if delivery["silenced"] is None],
        "inhibited": bool(found),
        "firing": len(firing or []),
        "inhibitions": [_inhibition(ruleset.inhibit_rules[item.rule_index], item.rule_index, item.source) for item in found],
        "severity": _severity(ruleset, severity),
        "runbooks": [
            {"id": runbook.id, "title": runbook.title, "mode": "auto" if runbook.auto else "manual"}
            for runbook in triggered_runbooks(ruleset, labels, {}, severity=severity.level)
        ],
    }


def _level(path: list[ir.Route], depth: int, labels: Mapping[str, str]) -> dict[str, Any]:
    from compiler.router import all_match

    route = path[depth]
    passed_over = []
    if depth > 0:
        for sibling in path[depth - 1].routes:
            if sibling is route:
                break
            if not all_match(sibling.matchers, labels):
                failed = [_matcher(matcher, labels) for matcher in sibling.matchers]
                passed_over.append({"id": sibling.id, "failed": [item for item in failed if not item["matched"]]})
    return {
        "id": route.id,
        "receiver": route.receiver,
        "continue": route.continue_,
        "location": f"{route.path}:{route.line}" if route.path else None,
        "matchers": [_matcher(matcher, labels) for matcher in route.matchers],
        "passed_over": passed_over,
    }


def _matcher(matcher: ir.Matcher, labels: Mapping[str, str]) -> dict[str, Any]:
    from compiler.router import matcher_matches

    return {
        "matcher": _matcher_text(matcher),
        "actual": labels.get(matcher.name),
        "matched": matcher_matches(matcher, labels),
    }


def _matcher_text(matcher: ir.Matcher) -> str:
    return f"{matcher.name}{matcher.op.value}{json.dumps(matcher.value, ensure_ascii=False)}"


def _inhibition(rule: ir.Inhibit, index: int, source: Mapping[str, str]) -> dict[str, Any]:
    return {
        "rule": index + 1,
        "source_matchers": [_matcher_text(matcher) for matcher in rule.source_matchers],
        "target_matchers": [_matcher_text(matcher) for matcher in rule.target_matchers],
        "equal": list(rule.equal),
        "source": dict(sorted(source.items())),
    }


def _severity(ruleset: ir.Ruleset, decision: Any) -> dict[str, Any]:
    described: dict[str, Any] = {"level": decision.level, "source": decision.source, "rule": None}
    if decision.rule_index is not None:
        rule = ruleset.severity.rules[decision.rule_index]
        described["rule"] = {
            "number": decision.rule_index + 1,
            "condition": expression_text(rule.when),
            "location": f"{rule.path}:{rule.line}" if rule.path else None,
        }
    if decision.source == "classify":
        described["confidence"] = ruleset.severity.classify_confidence
    return described


def expression_text(expr: ir.Expr) -> str:
    """Write an IR expression back in the rules' syntax, for messages."""
    if "path" in expr:
        return ".".join(expr["path"])
    if "op" in expr:
        return f"{_operand(expr['left'])} {expr['op']} {_operand(expr['right'])}"
    for joiner in ("and", "or"):
        if joiner in expr:
            return f" {joiner} ".join(_operand(item) for item in expr[joiner])
    if "not" in expr:
        return f"not {_operand(expr['not'])}"
    if "list" in expr:
        return "[" + ", ".join(expression_text(item) for item in expr["list"]) + "]"
    return _literal_text(expr)


def _operand(expr: ir.Expr) -> str:
    text = expression_text(expr)
    return f"({text})" if "and" in expr or "or" in expr else text


def _literal_text(expr: ir.Expr) -> str:
    value, kind = expr["value"], expr.get("type")
    if kind == "string":
        return json.dumps(value, ensure_ascii=False)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "duration":
        return f"{value:g}s"
    if kind == "percent":
        return f"{value * 100:g}%"
    return str(value)


# ---------------------------------------------------------------- the explanation as text


def render_explanation(explanation: dict[str, Any]) -> str:
    """Render the result of `explain_alert` as text."""
    lines = [f"alert {_labels_text(explanation['labels'])}"]
    if explanation["at"]:
        lines.append(f"at {explanation['at']}")
    for delivery in explanation["routes"]:
        lines.append("")
        lines.extend(_delivery_lines(delivery))
    lines.append("")
    lines.append(f"receivers: {', '.join(explanation['receivers'])}")
    if explanation["at"] and explanation["notified"] != explanation["receivers"]:
        lines.append(f"notified at that moment: {', '.join(explanation['notified']) or 'none'}")
    lines.append(_inhibition_line(explanation))
    lines.append(_severity_line(explanation["severity"]))
    lines.append(_runbooks_line(explanation["runbooks"]))
    return "\n".join(lines) + "\n"


def _delivery_lines(delivery: dict[str, Any]) -> list[str]:
    silenced = f" ({delivery['silenced']})" if delivery["silenced"] else ""
    lines = [f"route {delivery['route']} -> {delivery['receiver']}{silenced}"]
    width = max(len(level["id"]) for level in delivery["levels"])
    for level in delivery["levels"]:
        for skipped in level["passed_over"]:
            reasons = ", ".join(_matcher_result(item) for item in skipped["failed"])
            lines.append(f"  {'':{width}}  passed over {skipped['id']}: {reasons}")
        matchers = ", ".join(_matcher_result(item) for item in level["matchers"]) or "root, matches every alert"
        where = f"  [{level['location']}]" if level["location"] else ""
        extra = ", continue" if level["continue"] else ""
        lines.append(f"  {level['id']:{width}}  {matchers}; receiver {level['receiver']}{extra}{where}")
    if delivery["unmatched_children"]:
        lines.append(f"  {'':{width}}  no child route matched: {', '.join(delivery['unmatched_children'])}")
    lines.append(f"  group by {_list_text(delivery['group_by'])}, group key {delivery['group_key']}")
    return lines


def _matcher_result(item: dict[str, Any]) -> str:
    actual = "absent" if item["actual"] is None else json.dumps(item["actual"], ensure_ascii=False)
    return f"{item['matcher']} {'matched' if item['matched'] else 'failed'} ({actual})"


def _inhibition_line(explanation: dict[str, Any]) -> str:
    if not explanation["inhibitions"]:
        return "inhibited: no" if explanation["firing"] else "inhibited: no (no --firing alerts given)"
    parts = []
    for item in explanation["inhibitions"]:
        rule = f"{', '.join(item['source_matchers'])} silences {', '.join(item['target_matchers'])}"
        if item["equal"]:
            rule += f" on {_list_text(item['equal'])}"
        parts.append(f"by inhibit rule {item['rule']} ({rule}) through {_labels_text(item['source'])}")
    return "inhibited: yes, " + "; ".join(parts)


def _severity_line(severity: dict[str, Any]) -> str:
    rule = severity["rule"]
    if rule is not None:
        where = f" [{rule['location']}]" if rule["location"] else ""
        return f"severity: {severity['level']}, set by severity rule {rule['number']}: {rule['condition']}{where}"
    if severity["source"] == "classify":
        threshold = f"{severity['confidence'] * 100:g}% confidence" if severity["confidence"] else "its confidence threshold"
        fallback = f"; below {threshold}: {severity['level']}" if severity["level"] else ""
        return f"severity: no rule matched, so the classifier decides{fallback}"
    if severity["level"]:
        return f"severity: {severity['level']}, the policy's fallback (no rule matched)"
    return "severity: none (no rule matched and the policy has no fallback)"


def _runbooks_line(runbooks: list[dict[str, Any]]) -> str:
    if not runbooks:
        return "runbooks: none"
    return "runbooks: " + ", ".join(f"{item['id']} ({item['mode']})" for item in runbooks)


def _labels_text(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in labels.items()) + "}"


def _list_text(names: list[str]) -> str:
    return "[" + ", ".join(names) + "]"
