"""Safety: approval of risky automatic steps, no template values parsed by shells, no hand-built JSON."""

from __future__ import annotations

import pytest

from compiler.api import check_text
from compiler.checks import safety

TEAM = 'team ops { slack "#ops" }\n'


def diagnostics(source: str) -> list:
    result = check_text(TEAM + source, "s.irules")
    return [item for item in result.diagnostics if item.code.startswith("IR06")]


def codes(source: str) -> list[tuple[str, int, int]]:
    """Return the safety diagnostics as (code, line, column); line 1 is the `ops` team."""
    return [(item.code, item.span.line, item.span.column) for item in diagnostics(source)]


def only(source: str):
    found = diagnostics(source)
    assert len(found) == 1, [(item.code, item.message) for item in found]
    return found[0]


# ---------------------------------------------------------------- approval in automatic runbooks

DELETE = 'run ["kubectl", "delete", "pod", "{{ label.pod }}"]'


def test_high_risk_step_in_auto_runbook_needs_approval():
    found = only(f"runbook r {{\n  auto\n  step kill {{ {DELETE} risk high }}\n}}\n")
    assert found.code == "IR0601"
    assert (found.span.line, found.span.column, found.span.end_column) == (4, 67, 76)
    assert found.labels[0].span.line == 3
    assert "`kill`" in found.message


def test_manual_runbook_needs_no_approval():
    assert codes(f"runbook r {{\n  manual\n  step kill {{ {DELETE} risk high }}\n}}\n") == []


def test_approval_on_the_step_is_enough():
    source = f"runbook r {{\n  auto\n  step kill {{ {DELETE} risk high approval from ops timeout 30m }}\n}}\n"
    assert codes(source) == []


def test_approve_step_before_is_enough():
    source = f"runbook r {{\n  auto\n  step ask {{ approve from ops timeout 30m }}\n  step kill {{ {DELETE} risk high }}\n}}\n"
    assert codes(source) == []


def test_unrelated_approve_step_does_not_count():
    source = (
        "runbook r {\n  auto\n"
        '  step look { query prometheus "up" }\n'
        "  step ask { approve from ops timeout 30m }\n"
        f"  step kill after look {{ {DELETE} risk high }}\n"
        "}\n"
    )
    assert [code for code, _, _ in codes(source)] == ["IR0601"]


def test_approval_reached_through_after_counts():
    source = (
        "runbook r {\n  auto\n"
        "  step ask { approve from ops timeout 30m }\n"
        '  step look after ask { query prometheus "up" }\n'
        "  parallel {\n"
        f"    step kill after look {{ {DELETE} risk high }}\n"
        "    step note after look { notify ops }\n"
        "  }\n"
        "}\n"
    )
    assert codes(source) == []


def test_read_only_high_risk_step_needs_no_approval():
    source = 'runbook r {\n  auto\n  step look { query prometheus "up" risk high }\n  step dump { run ["pg_dump"] read_only risk high }\n}\n'
    assert codes(source) == []


def test_medium_risk_step_needs_no_approval():
    assert codes(f"runbook r {{\n  auto\n  step kill {{ {DELETE} risk medium }}\n}}\n") == []


def test_high_risk_action_needs_approval():
    source = (
        'action failover() {\n  run ["dbctl", "failover"]\n  risk high\n}\nrunbook r {\n  auto\n  step swap { failover }\n}\n'
    )
    found = only(source)
    assert found.code == "IR0601"
    assert (found.span.line, found.span.column) == (8, 15)
    assert [label.span.line for label in found.labels] == [7, 4]


def test_step_cannot_lower_the_risk_of_its_action():
    source = (
        'action failover() {\n  run ["dbctl", "failover"]\n  risk high\n}\n'
        "runbook r {\n  auto\n  step swap { failover risk low }\n}\n"
    )
    assert [code for code, _, _ in codes(source)] == ["IR0601"]


def test_read_only_action_needs_no_approval():
    source = (
        'action status() {\n  run ["dbctl", "status"]\n  risk high\n  read_only\n}\n'
        "runbook r {\n  auto\n  step look { status }\n}\n"
    )
    assert codes(source) == []


# ---------------------------------------------------------------- shells


def test_template_in_shell_script_is_rejected():
    found = only('runbook r {\n  step a { run ["sh", "-c", "echo {{ label.msg }} done"] }\n}\n')
    assert found.code == "IR0602"
    assert (found.span.line, found.span.column, found.span.end_column) == (3, 35, 50)
    assert (found.labels[0].span.line, found.labels[0].span.column) == (3, 17)


def test_positional_parameter_after_the_script_is_allowed():
    source = 'runbook r {\n  step a { run ["sh", "-c", "kill \\"$1\\"", "sh", "{{ label.pid }}"] }\n}\n'
    assert codes(source) == []


@pytest.mark.parametrize(
    "argv",
    [
        '["/bin/bash", "-ec", "kill {{ label.pid }}"]',
        '["kubectl", "exec", "api-0", "--", "sh", "-c", "kill {{ label.pid }}"]',
        '["docker", "exec", "api", "zsh", "-c", "kill {{ label.pid }}"]',
        '["sudo", "-u", "root", "env", "A=1", "bash", "{{ label.script }}"]',
        '["busybox", "sh", "-c", "kill {{ label.pid }}"]',
        '["cmd.exe", "/c", "dir", "{{ label.path }}"]',
        '["pwsh", "-Command", "Stop-Process", "{{ label.pid }}"]',
        '["ssh", "db-1", "systemctl", "restart", "{{ label.unit }}"]',
        '["bash", "-o", "{{ label.option }}", "-c", "true"]',
    ],
)
def test_shells_that_parse_the_value_are_found(argv):
    assert [code for code, _, _ in codes(f"runbook r {{\n  step a {{ run {argv} }}\n}}\n")] == ["IR0602"]


def test_program_that_is_no_shell_takes_templates():
    source = 'runbook r {\n  step a { run ["kubectl", "delete", "pod", "{{ label.pod }}", "-n", "{{ label.namespace }}"] }\n}\n'
    assert codes(source) == []


def test_shell_in_an_action_is_found():
    source = 'action say(msg: string matching ".*") {\n  run ["bash", "-c", "echo {{ msg }}"]\n}\n'
    assert codes(source) == [("IR0602", 3, 28)]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sh", "-c", "x", "a"], (0, [1, 2])),
        (["bash", "-e", "-o", "pipefail", "-c", "x"], (0, [1, 2, 3, 4, 5])),
        (["bash", "script.sh", "a", "b"], (0, [1])),
        (["kubectl", "get", "pods"], None),
        (["echo", "sh"], None),
        (["timeout", "30", "sh", "-c", "x"], (2, [3, 4])),
        (["ssh", "-p", "22", "host", "uptime"], (0, [1, 2, 3, 4])),
    ],
)
def test_shell_parsed_arguments(argv, expected):
    assert safety.shell_parsed(argv) == expected


# ---------------------------------------------------------------- quotes and JSON


def test_template_inside_quotes_in_an_argument_is_rejected():
    found = only('runbook r {\n  step a { run ["kubectl", "get", "pods", "--selector=\'{{ label.app }}\'"] }\n}\n')
    assert found.code == "IR0603"
    assert (found.span.line, found.span.column, found.span.end_column) == (3, 56, 71)


def test_quotes_inside_the_template_tag_are_fine():
    source = (
        'runbook r {\n  step a { run ["kubectl", "get", "pods", "--selector={{ label[\\"app.kubernetes.io/name\\"] }}"] }\n}\n'
    )
    assert codes(source) == []


def test_template_inside_json_string_is_rejected():
    source = 'runbook r {\n  step a { http POST "http://127.0.0.1/hook" body "{\\"name\\": \\"{{ label.x }}\\"}" }\n}\n'
    found = only(source)
    assert found.code == "IR0604"
    assert (found.span.line, found.span.column, found.span.end_column) == (3, 65, 78)
    assert "`{{ label.x | tojson }}`" in found.help


def test_tojson_value_outside_quotes_is_fine():
    source = 'runbook r {\n  step a { http POST "http://127.0.0.1/hook" body "{\\"name\\": {{ label.x | tojson }}}" }\n}\n'
    assert codes(source) == []


def test_hand_built_json_in_an_argument_is_rejected():
    source = 'runbook r {\n  step a { run ["curl", "-d", "{\\"a\\": \\"{{ label.x }}\\"}", "http://127.0.0.1"] }\n}\n'
    assert [code for code, _, _ in codes(source)] == ["IR0604"]


def test_hand_built_json_in_a_template_is_rejected():
    source = 'template hook {\n  en { body """{"text": "{{ label.summary }}"}""" }\n}\n'
    assert codes(source) == [("IR0604", 3, 26)]


def test_escaped_quote_stays_inside_the_json_string():
    assert safety.json_string_tag('{"a": "x\\" {{ v }}"}') == (11, 18)
    assert safety.json_string_tag('{"a": "x\\\\", "b": {{ v | tojson }}}') is None


def test_text_starting_with_a_tag_is_not_json():
    assert safety.looks_like_json('{{ payload | tojson }} "x"') is False
    assert safety.looks_like_json(' [{"a": 1}]') is True


# ---------------------------------------------------------------- argv shape


def test_empty_argv_is_rejected():
    found = only("runbook r {\n  step a { run [] }\n}\n")
    assert found.code == "IR0605"
    assert (found.span.line, found.span.column, found.span.end_column) == (3, 16, 18)


def test_program_chosen_by_a_template_is_rejected():
    found = only('runbook r {\n  step a { run ["{{ label.tool }}", "--version"] }\n}\n')
    assert found.code == "IR0606"
    assert (found.span.line, found.span.column) == (3, 17)


@pytest.mark.parametrize(("arg", "name"), [("/usr/bin/bash", "bash"), ("C:\\Windows\\CMD.EXE", "cmd"), ("sh", "sh")])
def test_program_name_strips_path_and_suffix(arg, name):
    assert safety.program_name(arg) == name
