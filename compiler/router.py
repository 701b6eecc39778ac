"""Alertmanager's routing, inhibition and fingerprint, evaluated on the IR.

Shared by `irules test`, `irules explain`, `irules diff --routing` and the
daemon, so that what we compute is what the generated Alertmanager
configuration does:

- the root always matches; a route matches when all its matchers do;
- an absent label has the empty value;
- regexes are RE2 and fully anchored (`^(?:re)$`);
- children are tried in order, and a matching child stops the search unless
  it has `continue`;
- a route is itself the result only when no child matched.

To route many label sets quickly, `Router` prepares the tree once: a parent
looks its children up by the value of one label (an `=` matcher, or a regex
of literals such as `critical|warning`) so that it tries only the children
that can match, and regexes are compiled once, with their recent results
cached. bench/router_bench.py measures it.
"""

from __future__ import annotations

import collections
import functools
import operator
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import re2

from compiler import ir

Labels = Mapping[str, str]
ValueTest = Callable[[str], bool]

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = 0xFFFFFFFFFFFFFFFF
_SEPARATOR = 0xFF
# Maximum results cached per regex that is not a set of literals, so that a long-running daemon's memory stays bounded.
_RESULTS_PER_REGEX = 1024


def fingerprint(labels: Labels) -> str:
    """Return Alertmanager's fingerprint of a label set: FNV-1a 64 over sorted names and values, as 16 hex digits."""
    items = tuple(sorted(labels.items()))
    if sum(len(name) + len(value) for name, value in items) <= _CACHED_CHARS:
        return _cached_fingerprint(items)
    return _fnv_fingerprint(items)


# The pipeline computes the fingerprint of one label set several times per alert, and
# hashing byte by byte in Python costs about 20 µs for a typical set (estimated with cProfile).
# Only small label sets are cached, so hostile alerts with huge labels cannot grow the cache past about 2 MiB.
_CACHED_CHARS = 1024


@functools.lru_cache(maxsize=1024)
def _cached_fingerprint(items: tuple[tuple[str, str], ...]) -> str:
    return _fnv_fingerprint(items)


def _fnv_fingerprint(items: tuple[tuple[str, str], ...]) -> str:
    value = _FNV_OFFSET
    for name, label_value in items:
        for text in (name, label_value):
            for byte in text.encode():
                value = ((value ^ byte) * _FNV_PRIME) & _MASK
            value = ((value ^ _SEPARATOR) * _FNV_PRIME) & _MASK
    return f"{value:016x}"


@functools.lru_cache(maxsize=4096)
def anchored_regex(pattern: str) -> re2._Regexp:
    """Compile `pattern` the way Alertmanager does: RE2, anchored at both ends."""
    return re2.compile(f"^(?:{pattern})$")


# Characters with a meaning in RE2 syntax outside a character class.
_REGEX_SYNTAX = frozenset("\\.+*?()|[]{}^$")
# Characters that a backslash turns into themselves in RE2. A backslash before any other
# character (a letter, a digit, `_`, a space) sends the pattern to the regex engine.
_SELF_ESCAPES = frozenset(string.punctuation) - {"_"}


def regex_literals(pattern: str) -> frozenset[str] | None:
    """Return the values that anchored `pattern` matches when it is literals joined by `|`, such as `critical|warning`.

    Returns None for any other pattern, which then needs the regex engine.
    """
    values = set()
    for alternative in pattern.split("|"):
        characters = []
        escaped = False
        for character in alternative:
            if escaped:
                if character not in _SELF_ESCAPES:
                    return None
                characters.append(character)
                escaped = False
            elif character == "\\":
                escaped = True
            elif character in _REGEX_SYNTAX:
                return None
            else:
                characters.append(character)
        if escaped:
            return None
        values.add("".join(characters))
    return frozenset(values)


@functools.lru_cache(maxsize=4096)
def _regex_test(pattern: str) -> ValueTest:
    """Return a test of one label value against anchored `pattern`.

    A pattern of literals becomes a set lookup. Any other pattern runs RE2 and
    keeps its latest results, because the values of routing labels (team,
    severity, environment) repeat from alert to alert. One search with
    google-re2 1.1 took about 1.4 µs and a cache hit about 0.06 µs on the
    machine of docs/benchmarks.md.
    """
    literals = regex_literals(pattern)
    if literals is not None:
        return literals.__contains__
    search = anchored_regex(pattern).search

    @functools.lru_cache(maxsize=_RESULTS_PER_REGEX)
    def matches(value: str) -> bool:
        return search(value) is not None

    return matches


def _value_test(matcher: ir.Matcher) -> ValueTest:
    """Return a test of one label value against a `!=`, `=~` or `!~` matcher."""
    op = matcher.op
    assert op is not ir.MatchOp.EQUAL, "`=` matchers are compared in place, without a test function"
    if op is ir.MatchOp.NOT_EQUAL:
        return functools.partial(operator.ne, matcher.value)
    test = _regex_test(matcher.value)
    if op is ir.MatchOp.REGEX:
        return test
    return lambda value: not test(value)


def matcher_matches(matcher: ir.Matcher, labels: Labels) -> bool:
    actual = labels.get(matcher.name, "")
    op = matcher.op
    if op is ir.MatchOp.EQUAL:
        return actual == matcher.value
    if op is ir.MatchOp.NOT_EQUAL:
        return actual != matcher.value
    found = _regex_test(matcher.value)(actual)
    return found if op is ir.MatchOp.REGEX else not found


def all_match(matchers: Iterable[ir.Matcher], labels: Labels) -> bool:
    return all(matcher_matches(matcher, labels) for matcher in matchers)


@dataclass(slots=True)
class _Node:
    """A route prepared for fast matching.

    A child is indexed by one of its matchers, an `=` matcher or else a regex
    of literals, and a parent looks its children up by the value of that
    matcher's label. The index matcher is then true, so `equal` and `tests`
    leave it out.
    """

    route: ir.Route
    position: int
    continue_: bool
    # `=` matchers as (label, value), compared without a function call
    equal: tuple[tuple[str, str], ...]
    # the other matchers as (label, test of the label's value)
    tests: tuple[tuple[str, ValueTest], ...]
    children: tuple[_Node, ...]
    # label -> value -> children that the index matcher admits for that value, in order
    index: dict[str, dict[str, tuple[_Node, ...]]]
    # children without an index matcher, which are tried for every label set
    unindexed: tuple[_Node, ...]


def _indexable(route: ir.Route) -> list[tuple[ir.Matcher, frozenset[str]]]:
    """Return the matchers `route` can be indexed by, with the values each admits: `=` matchers first, then regexes of literals."""
    found = [(matcher, frozenset((matcher.value,))) for matcher in route.matchers if matcher.op is ir.MatchOp.EQUAL]
    for matcher in route.matchers:
        if matcher.op is ir.MatchOp.REGEX and (literals := regex_literals(matcher.value)) is not None:
            found.append((matcher, literals))
    return found


def _index_matchers(routes: list[ir.Route]) -> list[tuple[ir.Matcher, frozenset[str]] | None]:
    """Choose the matcher to index each sibling by, preferring labels that many siblings share.

    Siblings indexed by one label need one lookup, and each further label costs
    another lookup and a merge of the candidates.
    """
    options = [_indexable(route) for route in routes]
    shared = collections.Counter(name for found in options for name in {matcher.name for matcher, _ in found})
    return [max(found, key=lambda option: shared[option[0].name]) if found else None for found in options]


def _prepare(route: ir.Route, position: int = 0, indexed_by: ir.Matcher | None = None) -> _Node:
    """Prepare `route` and its subtree. `indexed_by` is the matcher that the parent's index already checked."""
    index: dict[str, dict[str, list[_Node]]] = {}
    unindexed = []
    children = []
    for child_position, (child, found) in enumerate(zip(route.routes, _index_matchers(route.routes), strict=True)):
        node = _prepare(child, child_position, found[0] if found else None)
        children.append(node)
        if found is None:
            unindexed.append(node)
            continue
        by_value = index.setdefault(found[0].name, {})
        for value in found[1]:
            by_value.setdefault(value, []).append(node)

    others = [matcher for matcher in route.matchers if matcher is not indexed_by]
    return _Node(
        route=route,
        position=position,
        continue_=route.continue_,
        equal=tuple((matcher.name, matcher.value) for matcher in others if matcher.op is ir.MatchOp.EQUAL),
        tests=tuple((matcher.name, _value_test(matcher)) for matcher in others if matcher.op is not ir.MatchOp.EQUAL),
        children=tuple(children),
        index={name: {value: tuple(nodes) for value, nodes in by_value.items()} for name, by_value in index.items()},
        unindexed=tuple(unindexed),
    )


def _accepts(node: _Node, get: Callable[[str, str], str]) -> bool:
    """Return whether the label set behind `get` meets the matchers of `node` that its parent's index did not check."""
    for name, value in node.equal:
        if get(name, "") != value:
            return False
    for name, test in node.tests:
        if not test(get(name, "")):
            return False
    return True


def _by_position(node: _Node) -> int:
    return node.position


def _candidates(node: _Node, get: Callable[[str, str], str]) -> Sequence[_Node]:
    """Return, in order, the children whose index matcher admits the label set, and the children without one."""
    index = node.index
    if not index:
        return node.unindexed
    if len(index) == 1 and not node.unindexed:
        [(name, by_value)] = index.items()
        return by_value.get(get(name, ""), ())
    candidates = list(node.unindexed)
    for name, by_value in index.items():
        candidates.extend(by_value.get(get(name, ""), ()))
    candidates.sort(key=_by_position)
    return candidates


class Router:
    """Match label sets against a resolved route tree with Alertmanager's semantics."""

    def __init__(self, root: ir.Route) -> None:
        self.root = root
        self._root = _prepare(root)

    def match(self, labels: Labels) -> list[ir.Route]:
        """Return the routes that receive an alert with `labels`, in Alertmanager's order."""
        found: list[ir.Route] = []
        if _accepts(self._root, labels.get):
            self._collect(self._root, labels.get, found)
        return found

    def receivers(self, labels: Labels) -> list[str]:
        return [route.receiver for route in self.match(labels)]

    def _collect(self, node: _Node, get: Callable[[str, str], str], found: list[ir.Route]) -> None:
        """Append the routes below the matched `node` that receive the label set, or `node` itself when none does."""
        matched_child = False
        for child in _candidates(node, get):
            if _accepts(child, get):
                self._collect(child, get, found)
                matched_child = True
                if not child.continue_:
                    break
        if not matched_child:
            found.append(node.route)

    def trace(self, labels: Labels) -> list[list[ir.Route]]:
        """Return, for each matched route, the path from the root to it (for `explain`)."""
        paths: list[list[ir.Route]] = []
        if _accepts(self._root, labels.get):
            self._trace(self._root, labels.get, [], paths)
        return paths

    def _trace(self, node: _Node, get: Callable[[str, str], str], path: list[ir.Route], paths: list[list[ir.Route]]) -> None:
        here = [*path, node.route]
        matched_child = False
        for child in _candidates(node, get):
            if _accepts(child, get):
                self._trace(child, get, here, paths)
                matched_child = True
                if not child.continue_:
                    break
        if not matched_child:
            paths.append(here)


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
