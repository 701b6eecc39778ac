"""Render `pagerduty.json`: severity to priority, escalation policies per receiver, event orchestration rules.

Orchestration rules follow the shape of PagerDuty's Event Orchestration API
(`orchestration_path.sets[].rules[]` with `conditions[].expression` in
PagerDuty Condition Language, PCL, and `actions`). Conditions are translated
from our expressions with the same meaning, including that an absent label
reads as the empty string. Alert labels travel in the event's
`custom_details`; `targets.alertmanager` adds the labels these rules test to
the `details` of every PagerDuty config.

NOTE: annotations are read from `custom_details.annotations`, which only
events sent by the irules daemon carry; Alertmanager's own PagerDuty events
have no annotations there, so rules on annotations do not match them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import re2

from compiler import ir
from compiler.errors import TargetError
from targets.header import header_lines

# The PagerDuty event severity (one of four) for each of our severity levels.
EVENT_SEVERITIES = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def render(ruleset: ir.Ruleset) -> str:
    """Return the PagerDuty mapping as JSON text with sorted keys.

    Raises:
        TargetError: a rule's condition has no equivalent in PagerDuty Condition Language.
    """
    document = {
        "_generated": header_lines(ruleset),
        "severity_priorities": dict(sorted(ruleset.pagerduty.priorities.items())),
        "escalation_policies": escalation_policies(ruleset),
        "event_orchestration": {
            "orchestration_path": {
                "sets": [{"id": "start", "rules": [_rule(index, rule) for index, rule in enumerate(ruleset.pagerduty.rules)]}],
                "catch_all": {"actions": {}},
            }
        },
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def escalation_policies(ruleset: ir.Ruleset) -> dict[str, str]:
    """Return a map from receiver name to the escalation policy that its `pagerduty` channel names."""
    policies = {}
    for receiver in ruleset.receivers:
        for channel in receiver.channels:
            if channel.kind == "pagerduty" and channel.escalation_policy:
                policies[receiver.name] = channel.escalation_policy
    return dict(sorted(policies.items()))


def _rule(index: int, rule: ir.PagerDutyRule) -> dict[str, Any]:
    actions: dict[str, Any] = {}
    if rule.priority:
        actions["priority"] = rule.priority
    if rule.severity:
        actions["severity"] = EVENT_SEVERITIES[rule.severity]
    if rule.route_to:
        actions["route_to"] = rule.route_to
    if rule.suppress:
        actions["suppress"] = True
    if rule.annotate:
        actions["annotate"] = rule.annotate
    conditions = []
    if rule.when is not None:
        try:
            conditions.append({"expression": condition(rule.when)})
        except TargetError as error:
            raise TargetError(
                f"pagerduty rule {json.dumps(rule.title, ensure_ascii=False)}: condition `{describe(rule.when)}` has no "
                f"equivalent in PagerDuty Condition Language, because {error}; the checker accepts the condition since "
                "the irules daemon can evaluate it, but pagerduty.json cannot express it, so rewrite it with `==`, `!=`, "
                "`=~`, `!~` or `in` on labels, annotations or `alert.name` compared with strings"
            ) from None
    return {"id": f"rule-{index + 1}", "label": rule.title, "conditions": conditions, "actions": actions}


# ---------------------------------------------------------------- PagerDuty Condition Language


def condition(expr: ir.Expr) -> str:
    """Translate an expression into PagerDuty Condition Language.

    Example:
        condition({"op": "==", "left": {"path": ["label", "team"]}, "right": {"value": "db", "type": "string"}})
        returns "event.custom_details.team == 'db'".

    Raises:
        TargetError: the expression uses something PCL cannot express (ordering,
            numbers, fields other than labels, annotations and the alert name).
    """
    if "and" in expr:
        return " and ".join(f"({condition(item)})" for item in expr["and"])
    if "or" in expr:
        return " or ".join(f"({condition(item)})" for item in expr["or"])
    if "not" in expr:
        return f"not ({condition(expr['not'])})"
    op = expr.get("op")
    if op is None:
        raise TargetError(f"`{describe(expr)}` is not a comparison")
    left = field(expr["left"])
    right = expr["right"]
    if op in {"==", "!="}:
        equal = _equals(left, _string(right))
        return equal if op == "==" else f"not ({equal})"
    if op in {"=~", "!~"}:
        matched = _regex(left, _string(right))
        return matched if op == "=~" else f"not ({matched})"
    if op in {"in", "not in"} and "list" in right:
        options = " or ".join(f"({_equals(left, _string(item))})" for item in right["list"])
        return f"({options})" if op == "in" else f"not ({options})"
    if op in {"in", "not in"}:
        raise TargetError(f"PCL has no counterpart of `{op}` with a string on the right")
    raise TargetError(f"PCL has no counterpart of `{op}` on the strings of an event")


def field(expr: ir.Expr) -> str:
    """Return the PCL path of a label, an annotation or the alert name."""
    path = expr.get("path")
    if path is not None:
        root, *rest = path
        if root == "label" and len(rest) == 1:
            return "event.custom_details" + _member(rest[0])
        if root == "annotation" and len(rest) == 1:
            return "event.custom_details.annotations" + _member(rest[0])
        if root == "alert" and rest == ["name"]:
            return "event.custom_details.alertname"
    raise TargetError(f"`{describe(expr)}` is not part of a PagerDuty event")


def _member(name: str) -> str:
    return f".{name}" if _IDENTIFIER.fullmatch(name) else f"[{_literal(name)}]"


def _string(expr: ir.Expr) -> str:
    value = expr.get("value")
    if not isinstance(value, str) or expr.get("type") != "string":
        raise TargetError(f"PagerDuty event fields are compared with string literals only, not with `{describe(expr)}`")
    return value


def _literal(text: str) -> str:
    """Return a PCL string literal: single quotes, with only `\\'` and `\\\\` as escapes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _equals(left: str, value: str) -> str:
    # An absent label reads as "" in our rules, while PCL's `==` is false on a missing field.
    if value == "":
        return f"not ({left} exists) or {left} == ''"
    return f"{left} == {_literal(value)}"


def _regex(left: str, pattern: str) -> str:
    # Our regexes are case-sensitive RE2, matched against the whole value, with `.`
    # not matching a newline. PCL's reference states that `matches regex` is case-insensitive
    # and runs with the `s` and `m` flags, so `exactly` and `(?-sm)` turn those off.
    anchored = _literal(rf"(?-sm)\A(?:{pattern})\z")
    matched = f"{left} matches regex exactly {anchored}"
    if re2.fullmatch(f"(?:{pattern})", "") is not None:
        return f"not ({left} exists) or {matched}"
    return matched


def describe(expr: ir.Expr) -> str:
    """Return an expression as rules text, for messages."""
    if "path" in expr:
        return ".".join(expr["path"])
    if "value" in expr:
        return json.dumps(expr["value"], ensure_ascii=False)
    if "list" in expr:
        return "[" + ", ".join(describe(item) for item in expr["list"]) + "]"
    if "not" in expr:
        return f"not {describe(expr['not'])}"
    for joiner in ("and", "or"):
        if joiner in expr:
            return f" {joiner} ".join(describe(item) for item in expr[joiner])
    return f"{describe(expr['left'])} {expr['op']} {describe(expr['right'])}"
