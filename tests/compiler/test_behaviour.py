"""The behavioural diff: label sets that two versions of the rules route, inhibit or rate differently."""

from __future__ import annotations

from pathlib import Path

from compiler import ir
from compiler.api import check_path, check_text
from compiler.behaviour import companions, label_sets, regex_examples, routing_diff

REPO = Path(__file__).resolve().parents[2]
TEAMS = 'team ops { webhook "https://hooks.example.com/ops" }\nteam db { webhook "https://hooks.example.com/db" }\nteam web { webhook "https://hooks.example.com/web" }\n'


def rules(body: str) -> ir.Ruleset:
    result = check_text(TEAMS + body, "x.irules")
    assert not result.has_errors, [item.message for item in result.diagnostics]
    return result.ruleset()


OLD = rules('route {\n  receiver ops\n  match team = "db" -> db\n}\n')
NEW = rules('route {\n  receiver ops\n  match team =~ "db|data" -> db\n  match team = "web" -> web\n}\n')


def changed_labels(old: ir.Ruleset, new: ir.Ruleset) -> list[dict[str, str]]:
    return [dict(change.labels) for change in routing_diff(old, new).changes]


def test_identical_versions_have_no_changes():
    diff = routing_diff(OLD, OLD)
    assert diff.changes == []
    assert diff.render_text() == f"routing diff: no change in {diff.samples} label sets\n"


def test_diff_reports_exactly_the_changed_label_sets():
    assert sorted(changed_labels(OLD, NEW), key=str) == [{"team": "data"}, {"team": "web"}]


def test_small_policy_is_compared_exhaustively():
    # `team` takes db, data, web, absent and one random value.
    assert routing_diff(OLD, NEW).samples == 5


def test_change_records_old_and_new_receivers():
    change = next(change for change in routing_diff(OLD, NEW).changes if change.labels == {"team": "web"})
    assert change.old.receivers == ("ops",)
    assert change.new.receivers == ("web",)
    assert change.kinds == ("receivers",)


def test_severity_change_is_reported():
    old = rules('route { receiver ops }\nseverity {\n  high when label.severity == "critical"\n  else low\n}\n')
    new = rules(
        'route { receiver ops }\nseverity {\n  critical when label.severity == "critical"\n  high when label.severity in ["warning", "page"]\n  else low\n}\n'
    )
    changes = routing_diff(old, new).changes
    summary = sorted((change.labels["severity"], change.old.severity, change.new.severity) for change in changes)
    assert summary == [("critical", "high", "critical"), ("page", "low", "high"), ("warning", "low", "high")]


def test_narrower_inhibit_equal_list_is_reported_with_the_firing_alert():
    old = rules('route { receiver ops }\ninhibit severity = "critical" silences severity = "warning" on [alertname, cluster]\n')
    new = rules('route { receiver ops }\ninhibit severity = "critical" silences severity = "warning" on [alertname]\n')
    changes = routing_diff(old, new).changes
    assert changes != []
    assert all(change.labels["severity"] == "warning" for change in changes)
    assert all(change.firing["cluster"] != change.labels.get("cluster", "") for change in changes)
    assert all((change.old.inhibited, change.new.inhibited) == (False, True) for change in changes)


def test_same_seed_gives_the_same_label_sets():
    old = check_path(REPO / "examples" / "production", "production").ruleset()
    assert label_sets(old, NEW, samples=50, seed=7) == label_sets(old, NEW, samples=50, seed=7)


def test_large_space_is_sampled_to_the_requested_count():
    old = check_path(REPO / "examples" / "production", "production").ruleset()
    sets = label_sets(old, NEW, samples=50, seed=1)
    assert len(sets) == 50
    assert len({tuple(sorted(labels.items())) for labels in sets}) == 50


def test_render_groups_by_kind_with_counts_and_examples():
    text = routing_diff(OLD, NEW).render_text()
    assert text.splitlines() == [
        "routing diff: 2 of 5 label sets behave differently",
        "",
        "receivers [ops] -> [db]: 1 label set",
        '  {team="data"}',
        "",
        "receivers [ops] -> [web]: 1 label set",
        '  {team="web"}',
    ]


def test_render_says_how_many_examples_are_left_out():
    old = rules('route {\n  receiver ops\n  match team = "db" -> db\n  match env = "prod" -> ops\n}\n')
    new = rules('route {\n  receiver web\n  match team = "db" -> db\n  match env = "prod" -> ops\n}\n')
    text = routing_diff(old, new).render_text(examples=2)
    assert "receivers [ops] -> [web]: 4 label sets" in text
    assert "  {}\n" in text
    assert "  and 2 more" in text


def test_as_dict_lists_each_change():
    described = routing_diff(OLD, NEW).as_dict()
    assert described["samples"] == 5
    assert described["changed"] == 2
    web = next(change for change in described["changes"] if change["labels"] == {"team": "web"})
    assert web["old"] == {"receivers": ["ops"], "inhibited": False, "severity": "none"}
    assert web["new"]["receivers"] == ["web"]


def test_regex_examples_take_each_alternative():
    assert regex_examples("db|data|(web)") == ["db", "data", "web"]


def test_regex_examples_fill_wildcards():
    assert regex_examples("db-.*|api-.+") == ["db-", "api-x"]


def test_regex_examples_unwrap_an_outer_group():
    assert regex_examples("(?:eu|us)-1") == []
    assert regex_examples("(?:eu|us)") == ["eu", "us"]


def test_companion_satisfies_the_source_matchers_and_varies_equal_labels():
    rule = ir.Inhibit(
        source_matchers=[ir.Matcher(name="severity", op=ir.MatchOp.EQUAL, value="critical")],
        target_matchers=[ir.Matcher(name="severity", op=ir.MatchOp.EQUAL, value="warning")],
        equal=["cluster"],
    )
    found = companions({"severity": "warning", "cluster": "eu"}, [rule])
    assert found == [{"severity": "critical", "cluster": "eu"}, {"severity": "critical", "cluster": "eu-other"}]
