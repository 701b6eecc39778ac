"""Routing checks: one root route with Alertmanager's rules, and routes that can receive alerts."""

from __future__ import annotations

import textwrap

from compiler.api import check_text
from compiler.diagnostics import Diagnostic, Severity

RECEIVERS = 'receiver default { email "ops@example.com" }\nreceiver db { slack "#db" }\nreceiver chat { slack "#chat" }\n'


def found(source: str, code: str) -> list[Diagnostic]:
    result = check_text(textwrap.dedent(source), "x.irules")
    return [item for item in result.diagnostics if item.code == code]


def places(items: list[Diagnostic]) -> list[tuple[int, int]]:
    return [(item.span.line, item.span.column) for item in items]


def label_places(item: Diagnostic) -> list[tuple[int, int]]:
    return [(label.span.line, label.span.column) for label in item.labels]


def tree(*children: str) -> str:
    """Receivers on lines 1-3, the root route on line 4, children from line 5."""
    return RECEIVERS + "route { receiver default\n" + "".join(f"  {child}\n" for child in children) + "}\n"


# ---------------------------------------------------------------- the root


def test_project_without_route_is_rejected_without_span():
    items = found(RECEIVERS, "IR0401")
    assert len(items) == 1
    assert items[0].span is None


def test_second_route_points_at_the_first():
    items = found(RECEIVERS + "route { receiver default }\nroute { receiver db }\n", "IR0402")
    assert places(items) == [(5, 1)]
    assert label_places(items[0]) == [(4, 1)]


def test_root_route_without_receiver_is_rejected():
    items = found(RECEIVERS + 'route {\n  match team = "db" -> db\n}\n', "IR0403")
    assert places(items) == [(4, 1)]
    assert items[0].span.end_column == 6


def test_continue_on_root_is_rejected():
    items = found(RECEIVERS + "route {\n  receiver default\n  continue\n}\n", "IR0404")
    assert places(items) == [(6, 3)]


def test_mute_during_on_root_is_rejected():
    source = RECEIVERS + "time_interval night { }\nroute {\n  receiver default\n  mute_during [night]\n}\n"
    items = found(source, "IR0405")
    assert places(items) == [(7, 3)]
    assert items[0].message == "the root route cannot have `mute_during`"


def test_active_during_on_root_is_rejected():
    source = RECEIVERS + "time_interval day { }\nroute { receiver default  active_during [day] }\n"
    assert places(found(source, "IR0405")) == [(5, 27)]


def test_valid_root_has_no_routing_errors():
    source = tree('match team = "db" -> db')
    for code in ("IR0401", "IR0402", "IR0403", "IR0404", "IR0405", "IR0406"):
        assert found(source, code) == []


# ---------------------------------------------------------------- shadowed routes


def test_route_after_a_broader_sibling_is_shadowed():
    items = found(tree('match team = "db" -> db', 'match team = "db", severity = "critical" -> chat'), "IR0406")
    assert places(items) == [(6, 3)]
    assert items[0].span.end_column == 43
    assert items[0].severity is Severity.WARNING
    assert label_places(items[0]) == [(5, 3)]


def test_route_after_a_sibling_without_matchers_is_shadowed():
    items = found(tree("route -> db", 'match team = "db" -> chat'), "IR0406")
    assert places(items) == [(6, 3)]
    assert label_places(items[0]) == [(5, 3)]


def test_route_after_a_regex_matching_everything_is_shadowed():
    items = found(tree('match alertname =~ ".*" -> db', 'match team = "db" -> chat'), "IR0406")
    assert places(items) == [(6, 3)]


def test_earlier_sibling_with_continue_does_not_shadow():
    assert found(tree('match team = "db" -> db { continue }', 'match team = "db", severity = "critical" -> chat'), "IR0406") == []


def test_narrower_earlier_sibling_does_not_shadow():
    assert found(tree('match team = "db", severity = "critical" -> chat', 'match team = "db" -> db'), "IR0406") == []


def test_different_operator_does_not_shadow():
    assert found(tree('match team != "db" -> db', 'match team = "db" -> chat'), "IR0406") == []


def test_nested_siblings_are_checked():
    items = found(
        tree(
            'match team = "db" -> db {', '  match severity = "critical" -> chat', '  match severity = "critical" -> default', "}"
        ),
        "IR0406",
    )
    assert places(items) == [(7, 5)]


# ---------------------------------------------------------------- fallback receivers and duplicates


def test_parent_receiver_is_fallback_only():
    items = found(
        tree('match alertname =~ "Node.*" -> chat {', "  continue", '  match severity = "critical" -> db', "}"), "IR0407"
    )
    assert places(items) == [(5, 34)]
    assert items[0].message == "receiver `chat` gets only the alerts that no child route matches"
    assert label_places(items[0]) == [(6, 5)]


def test_childless_route_with_continue_is_no_fallback():
    assert found(tree('match alertname =~ "Node.*" -> chat { continue }'), "IR0407") == []


def test_parent_without_own_receiver_is_no_fallback():
    assert found(tree('match team = "db" {', "  continue", '  match severity = "critical" -> db', "}"), "IR0407") == []


def test_identical_routes_after_continue_deliver_twice():
    items = found(tree('match team = "db" -> db { continue }', 'match team = "db" -> db'), "IR0408")
    assert places(items) == [(6, 3)]
    assert label_places(items[0]) == [(5, 3)]
    assert items[0].message == "alerts reach receiver `db` twice through two identical routes"


def test_identical_matchers_to_other_receivers_are_fine():
    assert found(tree('match team = "db" -> db { continue }', 'match team = "db" -> chat'), "IR0408") == []


def test_inherited_receiver_counts_for_duplicates():
    items = found(tree('match team = "db" { continue }', 'match team = "db" -> default'), "IR0408")
    assert places(items) == [(6, 3)]


# ---------------------------------------------------------------- inhibit rules


def test_inhibit_with_identical_sides_never_silences():
    source = tree() + 'inhibit severity = "critical" silences severity = "critical" on [cluster]\n'
    items = found(source, "IR0409")
    assert places(items) == [(6, 40)]
    assert label_places(items[0]) == [(6, 9)]
    assert items[0].severity is Severity.WARNING


def test_inhibit_matcher_order_is_ignored():
    source = tree() + 'inhibit a = "1", b = "2" silences b = "2", a = "1" on [c]\n'
    assert places(found(source, "IR0409")) == [(6, 35)]


def test_inhibit_with_different_sides_is_fine():
    source = tree() + 'inhibit severity = "critical" silences severity = "warning" on [cluster]\n'
    assert found(source, "IR0409") == []
