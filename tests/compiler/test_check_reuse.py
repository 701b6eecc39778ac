"""Work the checker does once and reuses: template findings and step graphs still report every occurrence."""

from __future__ import annotations

from compiler.api import check_text
from compiler.checks import templates


def _codes_and_lines(source: str, prefix: str) -> list[tuple[str, int]]:
    result = check_text(source, "t.irules")
    return [(item.code, item.span.line) for item in result.diagnostics if item.code.startswith(prefix)]


def test_repeated_syntax_error_reported_each_time() -> None:
    source = 'template a {\n  en { body "{{ label.x " }\n}\ntemplate b {\n  en { body "{{ label.x " }\n}\n'
    assert _codes_and_lines(source, "IR080") == [("IR0801", 2), ("IR0801", 5)]


def test_repeated_misspelt_variable_reported_each_time() -> None:
    source = 'template a {\n  en { body "{{ lable.x }}" }\n}\ntemplate b {\n  en { body "{{ lable.x }}" }\n}\n'
    assert _codes_and_lines(source, "IR0808") == [("IR0808", 2), ("IR0808", 5)]


def test_unknown_filter_found_once_reported_twice() -> None:
    source = (
        "template a {\n"
        '  en { body "{% if 1 %}{{ label.x | shout }}{% endif %}" }\n'
        '  de { body "{% if 1 %}{{ label.x | shout }}{% endif %}" }\n'
        "}\n"
    )
    assert _codes_and_lines(source, "IR0802") == [("IR0802", 2), ("IR0802", 3)]
    findings = templates.inspect_template("{% if 1 %}{{ label.x | shout }}{% endif %}")
    assert findings.error is None
    assert findings.unknown == (("filter", "shout"),)


def test_findings_precede_jinja_rewrites() -> None:
    findings = templates.inspect_template('{{ "a" | upper }}{{ lable | lower }}')
    assert findings.error is None
    assert findings.variables == ("lable",)
    assert templates.inspect_template('{{ "a" | upper }}{{ lable | lower }}') is findings


def test_shared_step_graph_reports_each_cycle() -> None:
    # Three checks share each runbook's step graph.
    source = (
        "runbook r {\n  step a after b { wait 1s }\n  step b after a { wait 1s }\n}\n"
        "runbook s {\n  step c after d { wait 1s }\n  step d after c { wait 1s }\n}\n"
    )
    assert _codes_and_lines(source, "IR0504") == [("IR0504", 2), ("IR0504", 6)]
