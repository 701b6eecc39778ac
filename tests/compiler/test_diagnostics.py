"""Diagnostics: rendering, suggestions and what the parser lists as expected."""

from __future__ import annotations

import os
import re
from pathlib import Path

from compiler.api import check_path, check_text
from compiler.diagnostics import render_json, render_text
from compiler.loader import display_path, stdlib_dir


def test_misspelt_receiver_does_not_make_the_intended_one_unused():
    source = 'receiver pager { email "p@example.com" }\nroute {\n  receiver pagr\n}\n'
    result = check_text(source, "x.irules")
    codes = [item.code for item in result.diagnostics]
    assert codes == ["IR0203"]
    assert result.diagnostics[0].help == "a receiver with a similar name exists: `pager`"


def test_unused_receiver_is_still_reported_without_a_misspelling():
    source = 'receiver pager { email "p@example.com" }\nreceiver other { email "o@example.com" }\nroute {\n  receiver pager\n}\n'
    result = check_text(source, "x.irules")
    assert [(item.code, item.span.line) for item in result.diagnostics] == [("IR0901", 2)]


def test_expected_list_names_only_tokens_that_fit():
    result = check_text("defaults {\n  group_by [alertname cluster]\n}\n", "x.irules")
    assert result.diagnostics[0].message == "expected one of `,`, `]` after `alertname`, found a name `cluster`"


def test_stdlib_path_outside_working_directory_is_absolute(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shown = display_path(stdlib_dir() / "actions.irules")
    assert os.path.isabs(shown)
    assert shown.endswith("actions.irules")


def test_path_below_working_directory_is_relative(tmp_path: Path, monkeypatch):
    (tmp_path / "rules").mkdir()
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "rules" / "a.irules") == os.path.join("rules", "a.irules")


def test_text_rendering_has_location_caret_and_help():
    result = check_text("route {\n  receiver nobody\n}\n", "r.irules")
    text = render_text(result.diagnostics, result.project.sources)
    lines = text.splitlines()
    assert lines[0] == "r.irules:2:12: error[IR0203]: unknown receiver `nobody` in route"
    assert lines[2] == "2 |   receiver nobody"
    assert lines[3] == "  |            ^^^^^^ no receiver of this name is declared"
    assert lines[-1] == "1 error, 0 warnings"


def test_json_rendering_keeps_every_field():
    result = check_text("route {\n  receiver nobody\n}\n", "r.irules")
    rendered = render_json(result.diagnostics)
    assert '"code": "IR0203"' in rendered
    assert '"line": 2' in rendered
    assert '"column": 12' in rendered


def test_every_emitted_code_has_an_explanation():
    from compiler.codes import all_codes

    codes = all_codes()
    sources = Path(__file__).resolve().parents[2] / "compiler"
    used = set()
    for path in sources.rglob("*.py"):
        used.update(re.findall(r'"(IR\d{4})"', path.read_text()))
    missing = sorted(code for code in used if code not in codes)
    assert missing == []
    assert all(entry.explanation.strip() for entry in codes.values())


def test_production_example_checks_clean():
    result = check_path(Path(__file__).resolve().parents[2] / "examples" / "production", "production")
    assert [item for item in result.diagnostics if item.severity == "error"] == []
