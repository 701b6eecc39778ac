"""The behavioural diff: which alerts two versions of the rules treat differently.

`routing_diff` runs both rulesets on the same label sets and keeps those
whose receivers, inhibition or severity differ. The label sets come from
the rules themselves. They use every label name that a route, inhibit rule,
service or severity rule of either version reads. Each label takes the
values that those matchers and conditions name (the value of `=` and `!=`,
the alternatives of a regex, the items of an `in` list), or is absent, or
takes a random value. When all combinations fit in `samples`, all are tried,
so a small policy is compared exhaustively. Otherwise `samples` distinct
combinations are drawn with a generator seeded by `seed`, so the same
inputs give the same result.

Inhibition needs another firing alert. For each inhibit rule of either
version, each label set gets companion alerts: its own labels changed just
enough to satisfy the rule's source matchers, and one variant per `equal`
label with that label's value changed. Both versions see the same companions,
one at a time; a change of inhibition names the companion that shows it.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from compiler import ir
from compiler.evaluate import severity_of
from compiler.router import Router, anchored_regex, inhibitions, matcher_matches

_ABSENT = None
_CHANGE_KINDS = ("receivers", "inhibition", "severity")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The receivers, inhibition and severity that one version gives one label set."""

    receivers: tuple[str, ...]
    inhibited: bool
    severity: str

    def as_dict(self) -> dict[str, Any]:
        return {"receivers": list(self.receivers), "inhibited": self.inhibited, "severity": self.severity}

    def part(self, kind: str) -> str:
        """Return the part of the outcome that a kind of change is about, as text."""
        if kind == "receivers":
            return "[" + ", ".join(self.receivers) + "]"
        if kind == "inhibition":
            return "inhibited" if self.inhibited else "not inhibited"
        return self.severity


@dataclass(frozen=True, slots=True)
class Change:
    """A label set that the two versions treat differently; `firing` is the other alert an inhibition change needs."""

    labels: Mapping[str, str]
    old: Outcome
    new: Outcome
    firing: Mapping[str, str] | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind in _CHANGE_KINDS if self.old.part(kind) != self.new.part(kind))

    def as_dict(self) -> dict[str, Any]:
        described = {"labels": dict(self.labels), "kinds": list(self.kinds), "old": self.old.as_dict(), "new": self.new.as_dict()}
        if self.firing is not None:
            described["firing"] = dict(self.firing)
        return described

    def text(self, kind: str) -> str:
        """Return the label set as text, with the companion alert for an inhibition change."""
        if kind == "inhibition" and self.firing is not None:
            return f"{_labels_text(self.labels)} while {_labels_text(self.firing)} fires"
        return _labels_text(self.labels)


@dataclass(frozen=True, slots=True)
class RoutingDiff:
    """The label sets whose treatment changed, out of `samples` label sets compared."""

    changes: list[Change]
    samples: int

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "changed": len(self.changes), "changes": [change.as_dict() for change in self.changes]}

    def render_text(self, examples: int = 3) -> str:
        """Return a summary for a review: one paragraph per kind of change, with counts and a few label sets."""
        if not self.changes:
            return f"routing diff: no change in {self.samples} label sets\n"
        lines = [f"routing diff: {len(self.changes)} of {self.samples} label sets behave differently"]
        for (kind, before, after), changes in _grouped(self.changes):
            count = f"{len(changes)} label set" + ("" if len(changes) == 1 else "s")
            lines += ["", f"{kind} {before} -> {after}: {count}"]
            smallest = sorted(changes, key=lambda change: (len(change.labels), _labels_text(change.labels)))[:examples]
            lines += [f"  {change.text(kind)}" for change in smallest]
            if len(changes) > examples:
                lines.append(f"  and {len(changes) - examples} more")
        return "\n".join(lines) + "\n"


def routing_diff(old: ir.Ruleset, new: ir.Ruleset, *, samples: int = 2000, seed: int = 0) -> RoutingDiff:
    """Compare what `old` and `new` do with label sets drawn from both versions' rules.

    Example:
        diff = routing_diff(compile_rules(Path("before")), compile_rules(Path("after")))
        print(diff.render_text())
    """
    sets = label_sets(old, new, samples=samples, seed=seed)
    old_router, new_router = Router(old.route), Router(new.route)
    rules = [*old.inhibit_rules, *new.inhibit_rules]
    changes = []
    for labels in sets:
        old_inhibited, new_inhibited, firing = _inhibition(labels, companions(labels, rules), old, new)
        before = _outcome(old, old_router, labels, old_inhibited)
        after = _outcome(new, new_router, labels, new_inhibited)
        if before != after:
            changes.append(Change(labels, before, after, firing))
    return RoutingDiff(changes, len(sets))


def _inhibition(
    labels: dict[str, str], firing: list[dict[str, str]], old: ir.Ruleset, new: ir.Ruleset
) -> tuple[bool, bool, dict[str, str] | None]:
    """Return whether each version inhibits `labels`, and the companion that shows a difference, if one does."""
    for other in firing:
        before = bool(inhibitions(labels, [other], old.inhibit_rules))
        after = bool(inhibitions(labels, [other], new.inhibit_rules))
        if before != after:
            return before, after, other
    inhibited = bool(inhibitions(labels, firing, old.inhibit_rules))
    return inhibited, inhibited, None


def _outcome(ruleset: ir.Ruleset, router: Router, labels: dict[str, str], inhibited: bool) -> Outcome:
    return Outcome(
        receivers=tuple(router.receivers(labels)),
        inhibited=inhibited,
        severity=severity_of(ruleset, labels, {}).describe(),
    )


def _grouped(changes: list[Change]) -> list[tuple[tuple[str, str, str], list[Change]]]:
    groups: dict[tuple[str, str, str], list[Change]] = {}
    for change in changes:
        for kind in change.kinds:
            groups.setdefault((kind, change.old.part(kind), change.new.part(kind)), []).append(change)
    return sorted(groups.items(), key=lambda item: (_CHANGE_KINDS.index(item[0][0]), -len(item[1]), item[0]))


def _labels_text(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{name}="{value}"' for name, value in sorted(labels.items())) + "}"


# ---------------------------------------------------------------- label sets


def label_sets(old: ir.Ruleset, new: ir.Ruleset, *, samples: int, seed: int) -> list[dict[str, str]]:
    """Return distinct label sets built from the label names and values both versions read."""
    pools: dict[str, set[str]] = {}
    for ruleset in (old, new):
        for name, values in _named_values(ruleset):
            pools.setdefault(name, set()).update(values)
    generator = random.Random(seed)
    names = sorted(pools)
    if math.prod(len(pools[name]) + 2 for name in names) <= samples:
        choices = [[*sorted(pools[name]), _ABSENT, _random_value(generator)] for name in names]
        return [_labels(names, values) for values in itertools.product(*choices)]
    return _drawn(names, pools, samples, generator)


def _drawn(names: list[str], pools: dict[str, set[str]], samples: int, generator: random.Random) -> list[dict[str, str]]:
    ordered = {name: sorted(pools[name]) for name in names}
    seen: set[tuple[tuple[str, str], ...]] = set()
    drawn = []
    # Duplicates are skipped and the attempts are bounded, so a space with fewer
    # distinct label sets than `samples` ends the loop with what it found.
    for _ in range(samples * 4):
        values = []
        for name in names:
            roll = generator.random()
            if roll < 0.2:
                values.append(_ABSENT)
            elif roll < 0.3 or not ordered[name]:
                values.append(_random_value(generator))
            else:
                values.append(generator.choice(ordered[name]))
        labels = _labels(names, values)
        key = tuple(sorted(labels.items()))
        if key not in seen:
            seen.add(key)
            drawn.append(labels)
            if len(drawn) == samples:
                break
    return drawn


def _labels(names: list[str], values: tuple[str | None, ...] | list[str | None]) -> dict[str, str]:
    return {name: value for name, value in zip(names, values, strict=True) if value is not _ABSENT}


def _random_value(generator: random.Random) -> str:
    return f"v{generator.getrandbits(32):08x}"


def _named_values(ruleset: ir.Ruleset) -> Iterator[tuple[str, list[str]]]:
    """Yield each label name the ruleset reads, with the values it names for it."""
    matchers = [matcher for route in _walk(ruleset.route) for matcher in route.matchers]
    for rule in ruleset.inhibit_rules:
        matchers += rule.source_matchers + rule.target_matchers
        yield from ((name, []) for name in rule.equal)
    for service in ruleset.services:
        matchers += service.matchers
    for matcher in matchers:
        yield matcher.name, _matcher_values(matcher)
    for rule in ruleset.severity.rules:
        yield from _condition_values(rule.when)


def _walk(route: ir.Route) -> Iterator[ir.Route]:
    yield route
    for child in route.routes:
        yield from _walk(child)


def _matcher_values(matcher: ir.Matcher) -> list[str]:
    if matcher.op in (ir.MatchOp.EQUAL, ir.MatchOp.NOT_EQUAL):
        return [matcher.value]
    return regex_examples(matcher.value)


def _condition_values(expr: ir.Expr) -> Iterator[tuple[str, list[str]]]:
    """Yield the labels a condition compares, with the string literals it compares them to."""
    for key in ("and", "or"):
        for item in expr.get(key, ()):
            yield from _condition_values(item)
    if "not" in expr:
        yield from _condition_values(expr["not"])
    if "op" not in expr:
        return
    name = _label_name(expr["left"])
    if name is None:
        return
    right = expr["right"]
    literals = [item for item in right.get("list", [right]) if item.get("type") == "string"]
    texts = [item["value"] for item in literals]
    if expr["op"] in ("=~", "!~"):
        texts = [example for text in texts for example in regex_examples(text)]
    yield name, texts


def _label_name(expr: ir.Expr) -> str | None:
    path = expr.get("path")
    if path and len(path) == 2 and path[0] == "label":
        return path[1]
    if path == ["alert", "name"]:
        return "alertname"
    return None


def regex_examples(pattern: str) -> list[str]:
    """Return values that the anchored `pattern` matches, guessed from its top-level alternatives."""
    found = []
    for alternative in _alternatives(_unwrapped(pattern)):
        for candidate in (_simplified(alternative), alternative):
            if candidate not in found and _full_match(pattern, candidate):
                found.append(candidate)
                break
    return found


def _full_match(pattern: str, text: str) -> bool:
    try:
        return anchored_regex(pattern).search(text) is not None
    except Exception:
        return False  # a pattern RE2 rejects; the checker reports it, and it matches nothing here


def _unwrapped(pattern: str) -> str:
    for opening in ("(?:", "("):
        if pattern.startswith(opening) and pattern.endswith(")") and _closing(pattern) == len(pattern) - 1:
            return pattern[len(opening) : -1]
    return pattern


def _closing(pattern: str) -> int:
    """Return the index of the parenthesis that closes the one at index 0."""
    depth = 0
    escaped = False
    for index, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _alternatives(pattern: str) -> list[str]:
    parts, current, depth, escaped = [], [], 0, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _simplified(alternative: str) -> str:
    text = alternative.replace(".*", "").replace(".+", "x").replace("\\.", ".").replace("\\-", "-")
    return text.replace("(?:", "").replace("(", "").replace(")", "").strip("^$")


# ---------------------------------------------------------------- companions for inhibition


def companions(labels: Mapping[str, str], rules: list[ir.Inhibit]) -> list[dict[str, str]]:
    """Return the other firing alerts used to test inhibition of `labels` (see the module docstring)."""
    found: list[dict[str, str]] = []
    for rule in rules:
        source = _satisfying(labels, rule.source_matchers)
        if source is None:
            continue
        variants = [source] + [{**source, name: _other(source.get(name, ""))} for name in rule.equal]
        for variant in variants:
            if variant not in found and variant != dict(labels):
                found.append(variant)
    return found


def _other(value: str) -> str:
    return value + "-other" if value else "other"


def _satisfying(labels: Mapping[str, str], matchers: list[ir.Matcher]) -> dict[str, str] | None:
    """Return `labels` changed just enough to satisfy `matchers`, or `None` when no simple change does."""
    source = dict(labels)
    for matcher in matchers:
        if matcher_matches(matcher, source):
            continue
        for value in _candidates(matcher):
            if matcher_matches(matcher, {matcher.name: value}):
                source[matcher.name] = value
                break
        else:
            return None
    return source if all(matcher_matches(matcher, source) for matcher in matchers) else None


def _candidates(matcher: ir.Matcher) -> list[str]:
    if matcher.op is ir.MatchOp.EQUAL:
        return [matcher.value]
    if matcher.op is ir.MatchOp.REGEX:
        return regex_examples(matcher.value) + ["x", ""]
    return ["", "x", matcher.value + "-other"]
