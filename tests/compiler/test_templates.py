"""Templates: Jinja syntax in every rendered string, and the shape of `template` declarations."""

from __future__ import annotations

import jinja2
import pytest
from jinja2.sandbox import SandboxedEnvironment

from compiler import ast
from compiler.api import check_text
from compiler.checks import templates
from compiler.diagnostics import Severity


def diagnostics(source: str) -> list:
    result = check_text(source, "t.irules")
    return [item for item in result.diagnostics if item.code.startswith("IR08")]


def only(source: str):
    found = diagnostics(source)
    assert len(found) == 1, [(item.code, item.message) for item in found]
    return found[0]


def position(item) -> tuple[int, int, int, int]:
    span = item.span
    return span.line, span.column, span.end_line, span.end_column


# ---------------------------------------------------------------- declarations


def test_well_formed_template_is_clean():
    source = (
        "template disk {\n"
        '  en { body "Disk full on {{ label.instance }}" subject "Disk full" }\n'
        '  de-CH { body "Disk voll auf {{ label.instance }}" subject "Disk voll" }\n'
        "}\n"
    )
    assert diagnostics(source) == []


def test_template_without_en_is_rejected():
    found = only('template disk {\n  de { body "Disk voll" }\n}\n')
    assert found.code == "IR0804"
    assert position(found) == (1, 10, 1, 14)


@pytest.mark.parametrize("tag", ["en", "de", "de-CH", "zh-Hant-TW", "es-419", "fil"])
def test_language_tags_are_valid(tag):
    source = f'template t {{\n  en {{ body "x" }}\n  {tag} {{ body "y" }}\n}}\n'
    assert [item.code for item in diagnostics(source) if item.code == "IR0803"] == []


def test_locale_with_underscore_gets_the_canonical_tag():
    found = diagnostics('template t {\n  en { body "x" }\n  de_ch { body "y" }\n}\n')
    assert [item.code for item in found] == ["IR0803"]
    assert position(found[0]) == (3, 3, 3, 8)
    assert found[0].help == "write `de-CH`"


def test_locale_that_is_no_language_is_rejected():
    found = only('template t {\n  en { body "x" }\n  german { body "y" }\n}\n')
    assert found.code == "IR0803"
    assert "`de-CH`" in found.help


def test_unknown_field_suggests_the_known_one():
    found = only('template t {\n  en { body "x" titel "y" }\n}\n')
    assert found.code == "IR0806"
    assert position(found) == (2, 17, 2, 22)
    assert "`title`" in found.help


def test_locale_lacking_a_field_is_a_warning():
    found = only('template t {\n  en { subject "s" text "x" }\n  fr { text "y" }\n}\n')
    assert found.code == "IR0805"
    assert found.severity is Severity.WARNING
    assert position(found) == (3, 3, 3, 5)
    assert "lacks `subject`" in found.message
    assert found.labels[0].span.line == 2


def test_locale_adding_a_field_is_a_warning():
    found = only('template t {\n  en { text "x" }\n  fr { summary "r" text "y" }\n}\n')
    assert found.code == "IR0805"
    assert "adds `summary`" in found.message


def test_locale_defined_twice_is_rejected():
    found = only('template t {\n  en { text "x" }\n  en { text "y" }\n}\n')
    assert found.code == "IR0807"
    assert position(found) == (3, 3, 3, 5)
    assert found.labels[0].span.line == 2


def test_field_defined_twice_is_rejected():
    found = only('template t {\n  en { text "x" text "y" }\n}\n')
    assert found.code == "IR0807"
    assert position(found) == (2, 17, 2, 21)


# ---------------------------------------------------------------- syntax errors inside strings


def test_unclosed_value_points_at_its_tag():
    found = only('template t {\n  en { text "Disk {{ label.instance } full" }\n}\n')
    assert found.code == "IR0801"
    assert position(found) == (2, 19, 2, 43)


def test_broken_filter_points_at_its_tag():
    found = only('template t {\n  en { text "a {{ label.x }} b {{ label.y | }} c" }\n}\n')
    assert found.code == "IR0801"
    assert position(found) == (2, 32, 2, 47)
    assert "expected token `name`" in found.message


def test_error_after_escapes_keeps_the_exact_column():
    found = only('template t {\n  en { text "say \\"hi\\" \\u00e9 {{ label.x | }}" }\n}\n')
    assert found.code == "IR0801"
    assert position(found) == (2, 32, 2, 47)


def test_block_string_error_points_at_line():
    source = (
        'template t {\n  en {\n    body """\nFirst line\n{% for a in alerts %}\n  {{ a.labels.x | }}\n{% endfor %}\n"""\n  }\n}\n'
    )
    found = only(source)
    assert found.code == "IR0801"
    assert position(found) == (6, 3, 6, 21)


def test_unclosed_block_points_at_its_opening():
    found = only('template t {\n  en { text "{% if label.x %}yes" }\n}\n')
    assert found.code == "IR0801"
    assert position(found) == (2, 14, 2, 30)
    assert "end of template" in found.message


def test_unknown_tag_points_at_its_name():
    found = only('template t {\n  en { text "a {% shout %} b" }\n}\n')
    assert found.code == "IR0801"
    assert position(found) == (2, 19, 2, 24)
    assert "`shout`" in found.message


def test_unknown_filter_suggests_tojson():
    found = only('template t {\n  en { text "{{ label.x | tojsn }}" }\n}\n')
    assert found.code == "IR0802"
    assert position(found) == (2, 27, 2, 32)
    assert "`tojson`" in found.help


def test_unknown_test_is_reported():
    found = only('template t {\n  en { text "{% if label.x is numbr %}n{% endif %}" }\n}\n')
    assert found.code == "IR0802"
    assert "`number`" in found.help


def test_text_without_template_syntax_is_not_compiled():
    assert diagnostics('template t {\n  en { text "100% {not a tag} }}" }\n}\n') == []


def test_step_arguments_are_compiled():
    source = (
        "runbook r {\n"
        '  step a { run ["kubectl", "get", "pod", "{{ label.pod "] }\n'
        '  step b { http POST "http://127.0.0.1/{{ label.x | }}" body "{% if %}" header "X-A" "{{ }}" }\n'
        "}\n"
    )
    found = diagnostics(source)
    assert [(item.code, item.span.line, item.span.column) for item in found] == [
        ("IR0801", 2, 43),
        ("IR0801", 3, 40),
        ("IR0801", 3, 63),
        ("IR0801", 3, 87),
    ]


def test_action_call_arguments_are_compiled():
    source = 'action restart() { run ["kubectl", "rollout", "restart"] }\nrunbook r { step a { restart "{{ label.x" } }\n'
    found = only(source)
    assert found.code == "IR0801"
    assert position(found)[:2] == (2, 31)


def test_channel_options_are_compiled():
    found = only('team ops {\n  webhook "http://127.0.0.1/{{ label.team | }}"\n}\n')
    assert found.code == "IR0801"
    assert found.span.line == 2


# ---------------------------------------------------------------- variables


def test_misspelt_variable_is_a_warning():
    found = only('template t {\n  en { text "{{ lable.instance }} is down" }\n}\n')
    assert found.code == "IR0808"
    assert found.severity is Severity.WARNING
    assert position(found) == (2, 17, 2, 22)
    assert "`label`" in found.help


def test_unrelated_variable_is_not_reported():
    assert diagnostics('template t {\n  en { text "{{ summary_line }}" }\n}\n') == []


def test_action_parameter_is_a_known_variable():
    source = 'action scale(replica: string matching ".+") {\n  run ["kubectl", "scale", "--replicas={{ replica }}"]\n}\n'
    assert diagnostics(source) == []


# ---------------------------------------------------------------- helpers


def test_sandbox_is_jinja_sandbox():
    assert isinstance(templates.sandbox(), SandboxedEnvironment)


def test_sandbox_refuses_unsafe_attributes():
    with pytest.raises(jinja2.exceptions.SecurityError):
        templates.sandbox().from_string("{{ x.__class__.__mro__ }}").render(x=1)


def test_alert_data_is_rendered_as_text():
    rendered = templates.sandbox().from_string("{{ label.x }}").render(label={"x": "{{ 7 * 7 }}"})
    assert rendered == "{{ 7 * 7 }}"


@pytest.mark.parametrize(
    ("raw", "value", "index", "offset"),
    [
        ('"abc"', "abc", 2, 3),
        ('"a\\"b"', 'a"b', 2, 4),
        ('"\\u00e9x"', "éx", 1, 7),
        ('"a\\db"', "a\\db", 3, 4),
        ('"""a\nb"""', "a\nb", 2, 5),
    ],
)
def test_value_offsets_follow_escapes(raw, value, index, offset):
    string = ast.Str(span=None, value=value, block=raw.startswith('"""'))
    offsets = templates._value_offsets(raw, string)
    assert offsets[index] == offset
    assert offsets[-1] == len(raw) - (3 if string.block else 1)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("en_us", "en-US"), ("DE-ch", "de-CH"), ("zh_hant_tw", "zh-Hant-TW"), ("klingon", None)],
)
def test_canonical_locale(text, canonical):
    assert templates.canonical_locale(text) == canonical
