"""Router semantics on small hand-written IR trees: routing, inhibition and fingerprints.

The differential test in tests/targets compares the router with the real amtool
on whole configurations; these tests pin each rule of Alertmanager's routing
on the smallest tree that shows it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compiler import ir
from compiler.router import Inhibition, Router, _index_matchers, anchored_regex, fingerprint, inhibitions, regex_literals
from tests.conftest import REPO

FIXTURES = REPO.parent / "shared" / "fixtures" / "alertmanager"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))
OPS = {op.value: op for op in ir.MatchOp}


def matchers(*texts: str) -> list[ir.Matcher]:
    """Build matchers from `name op value` strings, such as `team = db` or `env =~ prod|qa`."""
    built = []
    for text in texts:
        name, op, value = (text.split(" ", 2) + [""])[:3]
        built.append(ir.Matcher(name=name, op=OPS[op], value=value))
    return built


def route(receiver: str, *conditions: str, children: tuple[ir.Route, ...] = (), continue_: bool = False) -> ir.Route:
    return ir.Route(
        id=receiver,
        receiver=receiver,
        matchers=matchers(*conditions),
        continue_=continue_,
        routes=list(children),
        group_wait_s=30,
        group_interval_s=300,
        repeat_interval_s=14400,
    )


def root(*children: ir.Route) -> Router:
    return Router(route("root", children=children))


def inhibit(source: list[str], target: list[str], equal: list[str]) -> list[ir.Inhibit]:
    return [ir.Inhibit(source_matchers=matchers(*source), target_matchers=matchers(*target), equal=equal)]


# ---------------------------------------------------------------- routing


def test_root_without_children_receives_everything() -> None:
    router = root()
    assert router.receivers({}) == ["root"]
    assert router.receivers({"team": "db"}) == ["root"]


def test_first_matching_sibling_wins() -> None:
    router = root(route("db", "team = db"), route("any-team", "team =~ .+"))
    assert router.receivers({"team": "db"}) == ["db"]


def test_later_sibling_matches_when_first_does_not() -> None:
    router = root(route("db", "team = db"), route("any-team", "team =~ .+"))
    assert router.receivers({"team": "api"}) == ["any-team"]


def test_continue_goes_on_to_later_siblings() -> None:
    router = root(route("audit", "team =~ .+", continue_=True), route("db", "team = db"), route("api", "team = api"))
    assert router.receivers({"team": "db"}) == ["audit", "db"]


def test_continue_on_unmatched_route_is_ignored() -> None:
    router = root(route("api", "team = api", continue_=True), route("db", "team = db"), route("last", "team =~ .+"))
    assert router.receivers({"team": "db"}) == ["db"]


def test_search_stops_at_first_match_without_continue() -> None:
    router = root(
        route("a", "team = db", continue_=True),
        route("b", "team = db"),
        route("c", "team = db"),
    )
    assert router.receivers({"team": "db"}) == ["a", "b"]


def test_parent_receives_when_no_child_matches() -> None:
    router = root(route("db", "team = db", children=(route("db-pager", "severity = critical"),)))
    assert router.receivers({"team": "db", "severity": "warning"}) == ["db"]


def test_parent_does_not_receive_when_a_child_matches() -> None:
    router = root(route("db", "team = db", children=(route("db-pager", "severity = critical"),)))
    assert router.receivers({"team": "db", "severity": "critical"}) == ["db-pager"]


def test_root_receives_when_nothing_below_matches() -> None:
    router = root(route("db", "team = db", children=(route("db-pager", "severity = critical"),)))
    assert router.receivers({"team": "api"}) == ["root"]


def test_parent_continue_resumes_after_subtree() -> None:
    parent = route("db", "team = db", children=(route("db-pager", "severity = critical"),), continue_=True)
    router = root(parent, route("everyone", "severity =~ .+"))
    assert router.receivers({"team": "db", "severity": "critical"}) == ["db-pager", "everyone"]
    assert router.receivers({"team": "db", "severity": "info"}) == ["db", "everyone"]


def test_child_continue_stays_in_subtree() -> None:
    children = (route("db-chat", "severity =~ .+", continue_=True), route("db-pager", "severity = critical"))
    router = root(route("db", "team = db", children=children), route("after", "team = db"))
    assert router.receivers({"team": "db", "severity": "critical"}) == ["db-chat", "db-pager"]


def test_route_needs_every_matcher() -> None:
    router = root(route("prod-db", "team = db", "env = prod"))
    assert router.receivers({"team": "db", "env": "prod"}) == ["prod-db"]
    assert router.receivers({"team": "db", "env": "qa"}) == ["root"]


def test_conflicting_equality_matchers_never_match() -> None:
    router = root(route("never", "team = db", "team = api"))
    assert router.receivers({"team": "db"}) == ["root"]
    assert router.receivers({"team": "api"}) == ["root"]


def test_absent_label_equals_empty_value() -> None:
    router = root(route("no-team", "team = "))
    assert router.receivers({}) == ["no-team"]
    assert router.receivers({"team": ""}) == ["no-team"]
    assert router.receivers({"team": "db"}) == ["root"]


def test_absent_label_fails_not_equal_empty() -> None:
    router = root(route("has-team", "team != "))
    assert router.receivers({}) == ["root"]
    assert router.receivers({"team": "db"}) == ["has-team"]


def test_absent_label_matches_regex_that_accepts_empty() -> None:
    router = root(route("any", "team =~ .*"))
    assert router.receivers({}) == ["any"]


def test_absent_label_matches_negative_nonempty_regex() -> None:
    router = root(route("unset", "team !~ .+"))
    assert router.receivers({}) == ["unset"]
    assert router.receivers({"team": "db"}) == ["root"]


def test_absent_label_matches_not_equal_value() -> None:
    router = root(route("not-prod", "env != prod"))
    assert router.receivers({}) == ["not-prod"]


def test_regex_is_anchored_at_both_ends() -> None:
    router = root(route("db", "team =~ db"))
    assert router.receivers({"team": "db"}) == ["db"]
    assert router.receivers({"team": "db-1"}) == ["root"]
    assert router.receivers({"team": "my-db"}) == ["root"]


def test_regex_alternation_is_anchored_as_a_whole() -> None:
    router = root(route("backend", "team =~ db|api"))
    assert router.receivers({"team": "api"}) == ["backend"]
    assert router.receivers({"team": "dbx"}) == ["root"]
    assert router.receivers({"team": "xapi"}) == ["root"]


def test_negative_regex_is_anchored() -> None:
    router = root(route("not-db", "team !~ db"))
    assert router.receivers({"team": "db-1"}) == ["not-db"]
    assert router.receivers({"team": "db"}) == ["root"]


def test_escaped_dot_matches_only_dot() -> None:
    router = root(route("dotted", r"host =~ a\.b"))
    assert router.receivers({"host": "a.b"}) == ["dotted"]
    assert router.receivers({"host": "axb"}) == ["root"]


def test_literal_regex_matches_like_equality() -> None:
    router = root(route("db", "team =~ db"), route("api", "team =~ api|web"))
    assert router.receivers({"team": "db"}) == ["db"]
    assert router.receivers({"team": "web"}) == ["api"]
    assert router.receivers({"team": "dbapi"}) == ["root"]


def test_sibling_order_kept_across_index() -> None:
    router = root(
        route("by-env", "env = prod", continue_=True),
        route("by-regex", "severity =~ crit.*", continue_=True),
        route("by-team", "team = db", continue_=True),
        route("negative", "team != api", continue_=True),
        route("by-env-again", "env = prod"),
    )
    labels = {"env": "prod", "severity": "critical", "team": "db"}
    assert router.receivers(labels) == ["by-env", "by-regex", "by-team", "negative", "by-env-again"]


def test_siblings_sharing_first_matcher_all_tried() -> None:
    router = root(route("db-prod", "team = db", "env = prod"), route("db-qa", "team = db", "env = qa"))
    assert router.receivers({"team": "db", "env": "qa"}) == ["db-qa"]


def test_match_returns_the_routes_themselves() -> None:
    pager = route("db-pager", "severity = critical")
    router = root(route("db", "team = db", children=(pager,)))
    assert router.match({"team": "db", "severity": "critical"}) == [pager]


def test_trace_returns_path_from_root_to_each_match() -> None:
    router = root(route("db", "team = db", children=(route("db-pager", "severity = critical"),), continue_=True), route("all"))
    paths = router.trace({"team": "db", "severity": "critical"})
    assert [[step.receiver for step in path] for path in paths] == [["root", "db", "db-pager"], ["root", "all"]]


def test_trace_ends_at_parent_when_no_child_matches() -> None:
    router = root(route("db", "team = db", children=(route("db-pager", "severity = critical"),)))
    paths = router.trace({"team": "db"})
    assert [[step.receiver for step in path] for path in paths] == [["root", "db"]]


def test_trace_and_match_agree() -> None:
    children = (route("db-chat", "severity =~ .+", continue_=True), route("db-pager", "severity = critical"))
    router = root(route("db", "team = db", children=children, continue_=True), route("other", "team != api"))
    labels = {"team": "db", "severity": "critical"}
    assert [path[-1] for path in router.trace(labels)] == router.match(labels)


def test_root_matchers_are_applied() -> None:
    router = Router(route("root", "env = prod"))
    assert router.receivers({"env": "prod"}) == ["root"]
    assert router.receivers({"env": "qa"}) == []


# ---------------------------------------------------------------- regexes of literals and the child index


@pytest.mark.parametrize(
    ("pattern", "values"),
    [
        ("critical|warning", {"critical", "warning"}),
        ("db", {"db"}),
        (r"a\.b", {"a.b"}),
        (r"team\-0001", {"team-0001"}),
        (r"a\\b", {"a\\b"}),
        ("", {""}),
        ("db|", {"db", ""}),
        ("données|a b", {"données", "a b"}),
    ],
)
def test_regex_of_literals_is_read_as_values(pattern: str, values: set[str]) -> None:
    assert regex_literals(pattern) == values


@pytest.mark.parametrize(
    "pattern", ["a.b", "db.*", "(db)", "[ab]", "a{2}", "^db$", "a+", "db?", r"\d", r"a\_b", r"a\ b", "a\\", r"a\|b"]
)
def test_regex_with_syntax_is_not_literal(pattern: str) -> None:
    assert regex_literals(pattern) is None


# Literal characters, and punctuation that stays literal behind a backslash.
LITERAL_PIECES = st.sampled_from(["a", "b", "-", "é", " ", ",", "/", r"\.", r"\-", r"\*", r"\(", r"\[", r"\\", r"\$"])
LITERAL_PATTERNS = st.lists(st.lists(LITERAL_PIECES, max_size=4).map("".join), min_size=1, max_size=3).map("|".join)
VALUES = st.text(alphabet="ab-é ,/.*([\\$|", max_size=5)


@given(pattern=LITERAL_PATTERNS, value=VALUES)
def test_regex_of_literals_agrees_with_re2(pattern: str, value: str) -> None:
    literals = regex_literals(pattern)
    assert literals is not None
    assert (value in literals) == (anchored_regex(pattern).search(value) is not None)


@given(pattern=LITERAL_PATTERNS)
def test_literal_values_match_in_re2(pattern: str) -> None:
    literals = regex_literals(pattern)
    assert literals is not None
    for value in literals:
        assert anchored_regex(pattern).search(value) is not None, value


def test_unescaped_dot_matches_any_character() -> None:
    router = root(route("dotted", "host =~ a.b"))
    assert router.receivers({"host": "axb"}) == ["dotted"]
    assert router.receivers({"host": "a.b"}) == ["dotted"]
    assert router.receivers({"host": "ab"}) == ["root"]


def test_literal_regex_index_keeps_order() -> None:
    router = root(
        route("backend", "team =~ db|api", continue_=True),
        route("db", "team = db", continue_=True),
        route("web", "team =~ web"),
        route("rest", "team =~ .*"),
    )
    assert router.receivers({"team": "db"}) == ["backend", "db", "rest"]
    assert router.receivers({"team": "api"}) == ["backend", "rest"]
    assert router.receivers({"team": "web"}) == ["web"]
    assert router.receivers({"team": "dbx"}) == ["rest"]


def test_empty_alternative_matches_absent_label() -> None:
    router = root(route("db-or-none", "team =~ db|"))
    assert router.receivers({}) == ["db-or-none"]
    assert router.receivers({"team": "db"}) == ["db-or-none"]
    assert router.receivers({"team": "api"}) == ["root"]


def test_negative_regex_of_literals_excludes_each_value() -> None:
    router = root(route("others", "team !~ db|api"))
    assert router.receivers({"team": "web"}) == ["others"]
    assert router.receivers({"team": "db"}) == ["root"]
    assert router.receivers({"team": "api"}) == ["root"]
    assert router.receivers({}) == ["others"]


def test_indexed_child_checks_other_matchers() -> None:
    router = root(route("db-prod", "team =~ db|api", "env = prod", "severity != info", "cluster =~ eu-.*"))
    assert router.receivers({"team": "db", "env": "prod", "cluster": "eu-1"}) == ["db-prod"]
    assert router.receivers({"team": "db", "env": "qa", "cluster": "eu-1"}) == ["root"]
    assert router.receivers({"team": "db", "env": "prod", "severity": "info", "cluster": "eu-1"}) == ["root"]
    assert router.receivers({"team": "db", "env": "prod", "cluster": "us-1"}) == ["root"]


def test_index_uses_most_shared_label() -> None:
    children = [
        route("a", "env = prod", "team = db"),
        route("b", "team = api"),
        route("c", "severity = critical", "team =~ web|www"),
        route("d", "severity =~ .+"),
    ]
    chosen = _index_matchers(children)
    assert [(found[0].name, sorted(found[1])) if found else None for found in chosen] == [
        ("team", ["db"]),
        ("team", ["api"]),
        ("team", ["web", "www"]),
        None,
    ]


def test_index_prefers_equality_over_regex() -> None:
    chosen = _index_matchers([route("a", "team =~ db|api", "team = db")])
    assert chosen[0] is not None
    assert chosen[0][0].op is ir.MatchOp.EQUAL


def test_cached_regex_results_stay_correct() -> None:
    router = root(route("db", "team =~ (db|api)-.*"), route("not-web", "team !~ (web)-.*"))
    for _ in range(3):
        assert router.receivers({"team": "db-1"}) == ["db"]
        assert router.receivers({"team": "web-1"}) == ["root"]
        assert router.receivers({"team": "cache-1"}) == ["not-web"]


def test_unindexed_child_tried_among_indexed() -> None:
    router = root(
        route("by-regex", "team =~ d.*", continue_=True),
        route("by-team", "team = db", continue_=True),
        route("not-api", "team != api"),
    )
    assert router.receivers({"team": "db"}) == ["by-regex", "by-team", "not-api"]
    assert router.receivers({"team": "dx"}) == ["by-regex", "not-api"]
    assert router.receivers({"team": "api"}) == ["root"]


# ---------------------------------------------------------------- inhibition

CRITICAL_INHIBITS_WARNING = inhibit(["severity = critical"], ["severity = warning"], ["cluster"])


def test_source_inhibits_target_with_equal_labels() -> None:
    target = {"severity": "warning", "cluster": "c1"}
    source = {"severity": "critical", "cluster": "c1"}
    assert inhibitions(target, [source, target], CRITICAL_INHIBITS_WARNING) == [Inhibition(rule_index=0, source=source)]


def test_equal_label_with_different_values_does_not_inhibit() -> None:
    target = {"severity": "warning", "cluster": "c1"}
    source = {"severity": "critical", "cluster": "c2"}
    assert inhibitions(target, [source], CRITICAL_INHIBITS_WARNING) == []


def test_equal_label_absent_on_both_inhibits() -> None:
    target = {"severity": "warning"}
    source = {"severity": "critical"}
    assert inhibitions(target, [source], CRITICAL_INHIBITS_WARNING) == [Inhibition(rule_index=0, source=source)]


def test_equal_label_absent_on_one_side_does_not_inhibit() -> None:
    target = {"severity": "warning"}
    source = {"severity": "critical", "cluster": "c1"}
    assert inhibitions(target, [source], CRITICAL_INHIBITS_WARNING) == []
    assert inhibitions(source | {"severity": "warning"}, [target | {"severity": "critical"}], CRITICAL_INHIBITS_WARNING) == []


def test_empty_equals_absent_for_equal_labels() -> None:
    target = {"severity": "warning", "cluster": ""}
    source = {"severity": "critical"}
    assert inhibitions(target, [source], CRITICAL_INHIBITS_WARNING) == [Inhibition(rule_index=0, source=source)]


def test_target_not_matching_target_matchers_is_not_inhibited() -> None:
    target = {"severity": "info", "cluster": "c1"}
    source = {"severity": "critical", "cluster": "c1"}
    assert inhibitions(target, [source], CRITICAL_INHIBITS_WARNING) == []


def test_alert_does_not_inhibit_itself() -> None:
    rules = inhibit(["team = db"], ["team = db"], [])
    alert = {"team": "db"}
    assert inhibitions(alert, [alert, dict(alert)], rules) == []


TWO_SIDED = inhibit(["severity =~ critical|warning"], ["severity =~ warning|info"], ["cluster"])


def test_two_sided_target_inhibited_by_source_only() -> None:
    target = {"severity": "warning", "cluster": "c1"}
    source = {"severity": "critical", "cluster": "c1"}
    assert inhibitions(target, [source], TWO_SIDED) == [Inhibition(rule_index=0, source=source)]


def test_two_sided_target_ignores_two_sided_sources() -> None:
    target = {"severity": "warning", "cluster": "c1"}
    other = {"severity": "warning", "cluster": "c1", "instance": "b"}
    assert inhibitions(target, [other], TWO_SIDED) == []


def test_two_sided_alerts_never_inhibit_each_other() -> None:
    rules = inhibit(["team = db"], ["team = db"], ["cluster"])
    first = {"team": "db", "cluster": "c1", "instance": "a"}
    second = {"team": "db", "cluster": "c1", "instance": "b"}
    assert inhibitions(first, [first, second], rules) == []
    assert inhibitions(second, [first, second], rules) == []


def test_one_sided_target_inhibited_by_two_sided_source() -> None:
    target = {"severity": "info", "cluster": "c1"}
    source = {"severity": "warning", "cluster": "c1"}
    assert inhibitions(target, [source], TWO_SIDED) == [Inhibition(rule_index=0, source=source)]


def test_each_rule_reports_its_first_source() -> None:
    rules = CRITICAL_INHIBITS_WARNING + inhibit(["alertname = NodeDown"], ["severity = warning"], [])
    target = {"severity": "warning", "cluster": "c1"}
    first = {"severity": "critical", "cluster": "c1", "instance": "a"}
    second = {"severity": "critical", "cluster": "c1", "instance": "b"}
    down = {"alertname": "NodeDown"}
    found = inhibitions(target, [first, second, down], rules)
    assert found == [Inhibition(rule_index=0, source=first), Inhibition(rule_index=1, source=down)]


# ---------------------------------------------------------------- fingerprint


def test_fingerprint_of_empty_label_set_is_fnv_offset() -> None:
    assert fingerprint({}) == "cbf29ce484222325"


def test_fingerprint_ignores_label_order() -> None:
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})


def test_fingerprint_separates_names_from_values() -> None:
    assert fingerprint({"ab": "c"}) != fingerprint({"a": "bc"})


def test_alertmanager_fixtures_are_present() -> None:
    assert FIXTURE_FILES, f"no Alertmanager webhook fixtures in {FIXTURES}"


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[path.stem for path in FIXTURE_FILES])
def test_fingerprint_matches_alertmanager_fixture(path: Path) -> None:
    message = json.loads(path.read_text(encoding="utf-8"))
    for alert in message["alerts"]:
        assert fingerprint(alert["labels"]) == alert["fingerprint"], alert["labels"]


def _reference_fingerprint(labels: dict[str, str]) -> str:
    # FNV-1a 64 over each sorted name and value, each followed by the byte 0xff, as
    # Alertmanager's model.LabelsToSignature computes it.
    value = 0xCBF29CE484222325
    for name in sorted(labels):
        for byte in name.encode() + b"\xff" + labels[name].encode() + b"\xff":
            value = ((value ^ byte) * 0x100000001B3) % 2**64
    return f"{value:016x}"


@pytest.mark.parametrize("size", [0, 10, 1024, 5000])
def test_fingerprint_matches_reference_implementation(size: int) -> None:
    # Label sets up to 1,024 characters are cached; larger ones are hashed every time.
    labels = {"alertname": "Down", "instance": "x" * size, "zone": "ü"}
    assert fingerprint(labels) == _reference_fingerprint(labels)
    assert fingerprint(dict(reversed(labels.items()))) == _reference_fingerprint(labels)
    labels["zone"] = "v"
    assert fingerprint(labels) == _reference_fingerprint(labels)
