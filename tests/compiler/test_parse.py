"""Parser: every construct of the grammar turns into AST nodes with exact spans."""

from __future__ import annotations

from compiler import ast
from compiler.api import check_text
from compiler.parse import parse_text


def test_route_tree_keeps_matchers_and_receivers():
    module = parse_text(
        'route {\n  receiver default\n  match severity = "critical", team =~ "db|infra" -> pager {\n    continue\n  }\n}\n',
        "r.irules",
    )
    root = module.decls[0].root
    child = root.children[0]
    assert root.receiver.value == "default"
    assert [(m.label.value, m.op, m.value.value) for m in child.matchers] == [
        ("severity", "=", "critical"),
        ("team", "=~", "db|infra"),
    ]
    assert child.receiver.value == "pager"
    assert [item.key for item in child.properties] == ["continue"]


def test_span_points_at_line_and_column():
    module = parse_text('team ops {\n  slack "#ops"\n}\n', "t.irules")
    channel = module.decls[0].channels[0]
    assert (channel.span.line, channel.span.column) == (2, 3)
    assert (channel.target.span.line, channel.target.span.column, channel.target.span.end_column) == (2, 9, 15)


def test_keyword_may_name_a_declaration():
    module = parse_text('team page { email "a@example.com" }\n', "t.irules")
    assert module.decls[0].name.value == "page"


def test_comments_are_collected_with_offsets():
    module = parse_text("# first\nteam ops { } # trailing\n", "t.irules")
    assert module.comments == [(0, "# first"), (21, "# trailing")]


def test_boolean_chain_is_flat():
    module = parse_text('severity { critical when a == "1" and b == "2" and c == "3" }\n', "s.irules")
    condition = module.decls[0].rules[0].condition
    assert isinstance(condition, ast.BoolOp)
    assert len(condition.items) == 3


def test_syntax_errors_in_two_declarations_are_both_reported():
    result = check_text('team a { slack "#x" template }\nteam b { email "x@example.com" }\nteam c { owns }\n', "e.irules")
    codes = [(item.code, item.span.line) for item in result.diagnostics]
    assert codes == [("IR0103", 1), ("IR0103", 3)]
