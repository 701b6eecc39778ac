"""Parser tables: the JSON cache gives the tables lark builds, and a bad cache is rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compiler import parse_tables
from compiler.lexer import LexError
from compiler.parse import ParseFailed, parse_text

SAMPLE = 'team ops {\n  slack "#ops"\n}\nroute {\n  receiver ops\n  match severity = "critical" -> ops { continue }\n}\n'


def _cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("parser-tables-*.json"))


def test_first_load_writes_cache(tmp_path: Path) -> None:
    built = parse_tables.load_tables(tmp_path)
    files = _cache_files(tmp_path)
    assert len(files) == 1
    assert parse_tables.load_tables(tmp_path) == built


def test_cached_tables_skip_lark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = parse_tables.load_tables(tmp_path)

    def fail(grammar: str) -> dict:
        raise AssertionError("the tables were built again although the cache is valid")

    monkeypatch.setattr(parse_tables, "_build", fail)
    assert parse_tables.load_tables(tmp_path) == built


@pytest.mark.parametrize("content", ["", "{", '{"format": 1}', "[1, 2]", '{"format": 1, "digest": "other"}', "corrupt-actions"])
def test_broken_cache_is_rebuilt(tmp_path: Path, content: str) -> None:
    expected = parse_tables.load_tables(tmp_path)
    cache = _cache_files(tmp_path)[0]
    if content == "corrupt-actions":
        data = json.loads(cache.read_text(encoding="utf-8"))
        data["actions"]["0"] = {"LBRACE": -100_000}
        content = json.dumps(data)
    cache.write_text(content, encoding="utf-8")
    assert parse_tables.load_tables(tmp_path) == expected
    assert json.loads(cache.read_text(encoding="utf-8"))["format"] == parse_tables.FORMAT


def test_unwritable_cache_folder_still_loads(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("", encoding="utf-8")
    tables = parse_tables.load_tables(blocked / "irules")
    assert tables.start in tables.actions
    assert tables.rules


def test_cache_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert parse_tables.default_cache_dir() == tmp_path / "irules"


def test_every_reduction_names_a_known_rule(tmp_path: Path) -> None:
    tables = parse_tables.load_tables(tmp_path)
    for row in tables.actions.values():
        for action in row.values():
            if action < 0:
                assert -action - 1 < len(tables.rules)
                rule = tables.rules[-action - 1]
                assert rule.keep is None or all(index < rule.size for index, _, _ in rule.keep)
            else:
                assert action in tables.actions


def test_parse_builds_nodes_with_spans() -> None:
    module = parse_text(SAMPLE, "s.irules")
    team, route = module.decls
    assert team.name.value == "ops"
    child = route.root.children[0]
    assert (child.span.line, child.span.column) == (6, 3)
    assert [matcher.value.value for matcher in child.matchers] == ["critical"]


def test_syntax_error_reported_before_lex_error() -> None:
    # The lexer reads the whole file first, but the parser reports in text order.
    with pytest.raises(ParseFailed) as caught:
        parse_text('team ops { slack "#x" template }\nteam b { email @ }\n', "e.irules")
    assert caught.value.token.line == 1


def test_bad_character_reported_with_position() -> None:
    with pytest.raises(LexError) as caught:
        parse_text('team ops { slack "#x" }\nteam b { email @ }\n', "e.irules")
    assert (caught.value.line, caught.value.column, caught.value.text) == (2, 16, "@")
