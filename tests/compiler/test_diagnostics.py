"""Diagnostics: rendering, suggestions and what the parser lists as expected."""

from __future__ import annotations

import os
import re
from pathlib import Path

from compiler.api import check_path, check_text
from compiler.diagnostics import render_json, render_text
from compiler.loader import display_path, stdlib_dir


def test_misspelt_name_keeps_target_used():
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


def test_lone_surrogate_escape_is_a_diagnostic():
    result = check_text('receiver x { slack "#a\\uD800" }\nroute {\n  receiver x\n}\n', "x.irules")
    assert [(item.code, item.span.line, item.span.column) for item in result.diagnostics] == [("IR0109", 1, 20)]


def test_surrogate_pair_escape_is_one_character():
    result = check_text('receiver x { slack "#a\\uD83D\\uDE00" }\nroute {\n  receiver x\n}\n', "x.irules")
    channel = result.project.modules[0].decls[0].channels[0]
    assert channel.target.value == "#a\U0001f600"


def test_byte_order_mark_is_ignored(tmp_path: Path):
    (tmp_path / "a.irules").write_bytes(b'\xef\xbb\xbfreceiver x { slack "#a" }\nroute {\n  receiver x\n}\n')
    result = check_path(tmp_path, with_stdlib=False)
    assert result.diagnostics == []


def test_folder_without_rules_files_is_an_error(tmp_path: Path):
    result = check_path(tmp_path)
    assert [item.code for item in result.diagnostics] == ["IR1003"]


def test_assignment_in_condition_suggests_the_comparison():
    result = check_text('severity {\n  high when label.alertname = "DiskFull"\n}\n', "x.irules")
    assert result.diagnostics[0].code == "IR0107"
    assert result.diagnostics[0].help == 'write `label.alertname == "DiskFull"`'


def test_function_call_in_condition_is_explained():
    result = check_text('severity {\n  high when lower(label.alertname) == "x"\n}\n', "x.irules")
    assert [(item.code, item.span.line, item.span.column) for item in result.diagnostics] == [("IR0110", 2, 18)]


def test_parent_sharing_receiver_is_no_fallback():
    source = (
        'receiver platform { email "p@example.com" }\nreceiver default { email "d@example.com" }\n'
        'route {\n  receiver default\n  match team = "platform" -> platform {\n    continue\n'
        '    match severity = "critical" { group_wait 0s }\n  }\n}\n'
    )
    result = check_text(source, "x.irules")
    assert [item.code for item in result.diagnostics if item.code == "IR0407"] == []
