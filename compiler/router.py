"""Alertmanager's routing, inhibition and fingerprint, evaluated on the IR.

Shared by `irules test`, `irules explain`, `irules diff --routing` and the
daemon, so that what we compute is what the generated Alertmanager
configuration does:

- the root always matches; a route matches when all its matchers do;
- an absent label has the empty value;
- regexes are RE2 and fully anchored (`^(?:re)$`);
- children are tried in order; a matching child stops the search unless it
  has `continue`; a route is itself the result only when no child matched.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import re2

from compiler import ir

Labels = Mapping[str, str]

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = 0xFFFFFFFFFFFFFFFF
_SEPARATOR = 0xFF


def fingerprint(labels: Labels) -> str:
    """Return Alertmanager's fingerprint of a label set: FNV-1a 64 over sorted names and values, as 16 hex digits."""
    value = _FNV_OFFSET
    for name in sorted(labels):
        for text in (name, labels[name]):
            for byte in text.encode():
                value = ((value ^ byte) * _FNV_PRIME) & _MASK
            value = ((value ^ _SEPARATOR) * _FNV_PRIME) & _MASK
    return f"{value:016x}"


@functools.lru_cache(maxsize=4096)
def anchored_regex(pattern: str) -> re2._Regexp:
    """Compile `pattern` the way Alertmanager does: RE2, anchored at both ends."""
    return re2.compile(f"^(?:{pattern})$")


def matcher_matches(matcher: ir.Matcher, labels: Labels) -> bool:
    actual = labels.get(matcher.name, "")
    op = matcher.op
    if op is ir.MatchOp.EQUAL:
        return actual == matcher.value
    if op is ir.MatchOp.NOT_EQUAL:
        return actual != matcher.value
    found = anchored_regex(matcher.value).search(actual) is not None
    return found if op is ir.MatchOp.REGEX else not found


def all_match(matchers: Iterable[ir.Matcher], labels: Labels) -> bool:
    return all(matcher_matches(matcher, labels) for matcher in matchers)


@dataclass(slots=True)
class _Node:
    """A route prepared for fast matching: children indexed by one equality matcher each."""

    route: ir.Route
    children: list[_Node]
    # label -> value -> indices of children whose first `=` matcher is label="value"
    index: dict[str, dict[str, list[int]]]
    # children with no `=` matcher; they must always be tried
    unindexed: list[int]


def _prepare(route: ir.Route) -> _Node:
    children = [_prepare(child) for child in route.routes]
    index: dict[str, dict[str, list[int]]] = {}
    unindexed: list[int] = []
    for position, child in enumerate(route.routes):
        equality = next((matcher for matcher in child.matchers if matcher.op is ir.MatchOp.EQUAL), None)
        if equality is None:
            unindexed.append(position)
        else:
            index.setdefault(equality.name, {}).setdefault(equality.value, []).append(position)
    return _Node(route=route, children=children, index=index, unindexed=unindexed)


class Router:
    """Match label sets against a resolved route tree with Alertmanager's semantics."""

    def __init__(self, root: ir.Route) -> None:
        self.root = root
        self._root = _prepare(root)

    def match(self, labels: Labels) -> list[ir.Route]:
        """Return the routes that receive an alert with `labels`, in Alertmanager's order."""
        return [node.route for node in self._match(self._root, labels)]

    def receivers(self, labels: Labels) -> list[str]:
        return [route.receiver for route in self.match(labels)]

    def _match(self, node: _Node, labels: Labels) -> list[_Node]:
        if node.route.matchers and not all_match(node.route.matchers, labels):
            return []
        found: list[_Node] = []
        for position in self._candidates(node, labels):
            child = node.children[position]
            matches = self._match(child, labels)
            found.extend(matches)
            if matches and not child.route.continue_:
                break
        return found or [node]

    @staticmethod
    def _candidates(node: _Node, labels: Labels) -> list[int]:
        """Return, in order, the children that can match; the others fail an `=` matcher."""
        if not node.index:
            return node.unindexed
        candidates = list(node.unindexed)
        for name, by_value in node.index.items():
            candidates.extend(by_value.get(labels.get(name, ""), ()))
        candidates.sort()
        return candidates

    def trace(self, labels: Labels) -> list[list[ir.Route]]:
        """Return, for each matched route, the path from the root to it (for `explain`)."""
        paths: list[list[ir.Route]] = []
        self._trace(self._root, labels, [], paths)
        return paths

    def _trace(self, node: _Node, labels: Labels, path: list[ir.Route], paths: list[list[ir.Route]]) -> bool:
        if node.route.matchers and not all_match(node.route.matchers, labels):
            return False
        here = [*path, node.route]
        matched_child = False
        for position in self._candidates(node, labels):
            child = node.children[position]
            if self._trace(child, labels, here, paths):
                matched_child = True
                if not child.route.continue_:
                    break
        if not matched_child:
            paths.append(here)
        return True


@dataclass(frozen=True, slots=True)
class Inhibition:
    """Why an alert is inhibited: the rule's position and the firing alert that caused it."""

    rule_index: int
    source: Mapping[str, str]


def inhibitions(target: Labels, firing: Iterable[Labels], rules: list[ir.Inhibit]) -> list[Inhibition]:
    """Return the inhibitions of `target` by the other `firing` alerts.

    Alertmanager's rule: the target matches the target matchers, a firing
    source matches the source matchers, and every `equal` label has the same
    value on both (absent counts as empty, so absent on both is equal). When
    the target itself also matches the source matchers, sources that match the
    target matchers are skipped, so two alerts cannot inhibit each other.
    """
    firing = list(firing)
    found: list[Inhibition] = []
    for position, rule in enumerate(rules):
        if not all_match(rule.target_matchers, target):
            continue
        two_sided = all_match(rule.source_matchers, target)
        for source in firing:
            if source is target or dict(source) == dict(target):
                continue
            if not all_match(rule.source_matchers, source):
                continue
            if two_sided and all_match(rule.target_matchers, source):
                continue
            if all(source.get(name, "") == target.get(name, "") for name in rule.equal):
                found.append(Inhibition(rule_index=position, source=source))
                break
    return found
