"""No input makes the compiler or the formatter raise: every text yields diagnostics or a clean result.

Inputs are random text and mutations of small valid snippets, one per
declaration kind: tokens or characters deleted, duplicated, swapped or
replaced, and odd pieces inserted (quotes, braces, unicode, NUL, very long
strings). Crashes already known in code this file does not own have plain
reproducers below, marked `xfail(strict=True)`, so each turns into a failure
to remove its mark once fixed.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import ast
from compiler.api import CheckResult, check_text
from compiler.diagnostics import Diagnostic
from compiler.fmt import format_source

CORPUS = [
    "use runbooks [rb-001, rb-002]\n",
    'settings {\n  external_url "https://am.example.com"\n  smtp "smtp.example.com:587" from "a@example.com"'
    ' password secret("SMTP") require_tls true\n  locale en\n  resolve_timeout 5m\n}\n',
    "environment staging {\n  defaults {\n    group_wait 1m\n  }\n}\n",
    "defaults {\n  group_by [alertname, cluster]\n  group_wait 10s\n  repeat_interval 1h30m\n}\n",
    'team ops {\n  slack "#ops" template critical send_resolved true\n  pagerduty key secret("OPS_KEY")\n'
    "  owns [api]\n  escalation standard\n}\n",
    'receiver pager {\n  email "oncall@example.com"\n  webhook url secret("HOOK")\n}\n',
    'service api {\n  team ops\n  depends_on [db]\n  tier 1\n  match service = "api", env !~ "dev.*"\n}\n',
    'route {\n  receiver ops\n  match severity = "critical" -> pager {\n    continue\n  }\n'
    '  match team =~ "db|infra" -> ops\n  route -> ops\n}\n',
    'inhibit severity = "critical" silences severity = "warning" on [alertname, cluster]\n',
    'time_interval nights {\n  weekdays ["saturday", "sunday"]\n  period {\n    times ["00:00-06:00"]\n'
    '    location "Europe/Berlin"\n  }\n}\n',
    'severity {\n  critical when label.severity == "critical"\n  high when label.severity == "warning" and service.tier == 1\n'
    "  else classify confidence 80% fallback medium\n}\n",
    'severity {\n  low when not (label.a in [1, 2.5, 10s, 90%] or label.b =~ "x")\n  else low\n}\n',
    "dedup {\n  by [alertname, cluster]\n  window 5m\n  flap_window 30m\n  flap_threshold 4\n}\n",
    'correlate by-service {\n  when label.category == "security"\n  by [cluster]\n  window 10m\n  follow_dependencies\n}\n',
    'pagerduty {\n  priority critical P1\n  rule "db" {\n    when label.service == "db"\n    severity critical\n    suppress\n  }\n}\n',
    'slack {\n  app_name "irules"\n  command "/incident"\n  signing_secret secret("SIGN")\n  socket_mode false\n}\n',
    "escalation standard {\n  after 5m unacknowledged notify ops\n  after 30m unresolved escalate to 2\n"
    "  for severity [critical] {\n    after 1m unacknowledged page ops\n  }\n  repeat 3 every 1h\n}\n",
    'source ci {\n  path "/hooks/ci"\n  auth hmac secret("CI") header "X-Sig" algorithm sha256\n'
    '  map {\n    label.alertname = body.name\n    label.severity = body["level"]\n  }\n  resolved when body.ok == true\n}\n',
    'action restart(kind: string matching "^pod$", name: string = "api" matching "^[a-z]+$") {\n'
    '  run ["kubectl", "rollout", "restart", "{{ kind }}/{{ name }}"]\n  risk medium\n  mutating\n}\n',
    'runbook rb-100 "Restart" {\n  when alertname == "HighMemoryUsage"\n  auto\n  timeout 10m\n'
    '  step top {\n    query prometheus "up == 0"\n    timeout 30s\n  }\n'
    '  step restart after top {\n    restart pod "{{ label.pod }}" name = "api"\n    retry 3 backoff 5s\n  }\n}\n',
    'runbook rb-101 {\n  manual\n  parallel {\n    step a {\n      http POST "http://127.0.0.1:9/x" body "{}" expect 200\n'
    "    }\n    step b {\n      wait 1m\n    }\n  }\n  step c after a, b {\n    approval from ops timeout 1h\n"
    '    set incident.status = "mitigating"\n    notify ops template critical\n  }\n}\n',
    'template critical {\n  en {\n    title "Alert {{ label.alertname }}"\n    text """Line one\nline two"""\n  }\n}\n',
    'test "critical goes to the pager" {\n  alert { alertname = "X", severity = "critical" }\n  also_firing { alertname = "Y" }\n'
    '  at "2024-01-01T00:00:00Z"\n  expect receivers [pager]\n  expect not inhibited\n}\n',
    '# a comment\nteam db { # trailing\n  email "db@example.com"\n\n  # before the brace\n}\n',
    "runbook rb-102 {\n  step s {\n    assist focus root-cause\n    report summary\n    on_failure s\n    read_only\n  }\n}\n",
]

ODD_PIECES = [
    '"',
    '"""',
    "'",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    ".",
    ":",
    "=",
    "==",
    "->",
    "=~",
    "#",
    "\\",
    "\0",
    "\n",
    "\t",
    "\r",
    "é",
    "ß",
    "\u2028",
    "\ufeff",
    "\U0001f600",
    "\udcff",
    "secret(",
    "not",
    "and",
    "in",
    "10s",
    "1h30m",
    "90%",
    "2.5",
    "007",
    "-",
    "x" * 5000,
    '"' + "y" * 5000 + '"',
    '"""' + "z\n" * 500 + '"""',
    "{" * 200,
    "not " * 200,
]

_TOKEN = re.compile(
    r'#[^\n]*|"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|\s+|[A-Za-z_][A-Za-z0-9_-]*|\d+[a-z%.\d]*|->|==|=~|!~|!=|.', re.S
)


@st.composite
def mutated_sources(draw: st.DrawFn) -> str:
    """Draw one to three corpus snippets and apply a few token- or character-level mutations."""
    snippets = draw(st.lists(st.sampled_from(CORPUS), min_size=1, max_size=3))
    pieces = _TOKEN.findall("".join(snippets))
    insert = st.one_of(st.sampled_from(ODD_PIECES), st.text(max_size=4))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "replace", "chars"]))
        index = draw(st.integers(min_value=0, max_value=max(0, len(pieces) - 1)))
        if kind == "delete" and pieces:
            del pieces[index]
        elif kind == "duplicate" and pieces:
            pieces.insert(index, pieces[index])
        elif kind == "swap" and pieces:
            other = draw(st.integers(min_value=0, max_value=len(pieces) - 1))
            pieces[index], pieces[other] = pieces[other], pieces[index]
        elif kind == "insert":
            pieces.insert(index, draw(insert))
        elif kind == "replace" and pieces:
            pieces[index] = draw(insert)
        elif kind == "chars":
            pieces = [_mutate_characters(draw, "".join(pieces))]
    return "".join(pieces)


@st.composite
def commented_sources(draw: st.DrawFn) -> str:
    """Draw a snippet and put comments, blank lines and spaces between random tokens; it stays valid."""
    pieces = _TOKEN.findall(draw(st.sampled_from(CORPUS)))
    gaps = st.sampled_from([" ", "\n", "\n\n\n", "  # note\n", " #\n", "\n# own line\n\n"])
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        index = draw(st.integers(min_value=0, max_value=len(pieces)))
        pieces.insert(index, draw(gaps))
    return "".join(pieces)


def _mutate_characters(draw: st.DrawFn, text: str) -> str:
    position = draw(st.integers(min_value=0, max_value=len(text)))
    width = draw(st.integers(min_value=0, max_value=3))
    return text[:position] + draw(st.text(max_size=3)) + text[position + width :]


def assert_never_raises(text: str) -> None:
    """Check and format `text`: both must end in diagnostics or a result, never an exception."""
    result = check_text(text, "fuzz.irules")
    assert isinstance(result, CheckResult)
    assert all(isinstance(item, Diagnostic) for item in result.diagnostics)
    if not result.has_errors:
        # Every input yields diagnostics or a ruleset: a clean project must lower.
        assert result.ruleset().version >= 1
    if not result.project.syntax_ok:
        return
    formatted = format_source(text, "fuzz.irules")
    assert format_source(formatted, "fuzz.irules") == formatted


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_corpus_covers_every_declaration_kind():
    declared = {type(decl).__name__ for snippet in CORPUS for decl in check_text(snippet, "c.irules").project.modules[0].decls}
    every_kind = {cls.__name__ for cls in vars(ast).values() if isinstance(cls, type) and issubclass(cls, ast.Decl)}
    assert declared == every_kind - {"Decl"}


@pytest.mark.parametrize("snippet", CORPUS, ids=[f"{index}-{snippet.split()[0]}" for index, snippet in enumerate(CORPUS)])
def test_corpus_snippet_has_no_syntax_errors(snippet):
    result = check_text(snippet, "c.irules")
    assert result.project.syntax_ok, [item.message for item in result.diagnostics]


@FUZZ
@given(st.text(max_size=300))
def test_random_text_never_raises(text):
    assert_never_raises(text)


@FUZZ
@given(mutated_sources())
def test_mutated_snippet_never_raises(text):
    assert_never_raises(text)


@FUZZ
@given(st.lists(st.sampled_from(ODD_PIECES + ["team", "route", "match", "severity", "when", "a", " "]), max_size=30))
def test_odd_pieces_never_raise(pieces):
    assert_never_raises(" ".join(pieces))


@FUZZ
@given(commented_sources())
def test_comments_anywhere_format_stably(text):
    assert check_text(text, "fuzz.irules").project.syntax_ok
    formatted = format_source(text, "fuzz.irules")
    assert format_source(formatted, "fuzz.irules") == formatted


# ---------------------------------------------------------------- crashes found by the fuzzer, now fixed


def test_inhibit_without_equal_labels_is_checked():
    result = check_text('inhibit a = "b" silences c = "d"\n', "x.irules")
    assert result.project.syntax_ok


def test_parameter_without_pattern_is_checked():
    result = check_text("action a(name: string) {\n  mutating\n}\n", "x.irules")
    assert result.project.syntax_ok


def test_deeply_nested_condition_is_rejected_with_a_diagnostic():
    result = check_text("severity {\n  high when " + "not " * 1000 + "a\n}\n", "x.irules")
    assert [item.code for item in result.diagnostics] == ["IR0108"]


def test_template_field_named_like_a_keyword_parses():
    result = check_text('template t {\n  en {\n    title "x"\n    body "y"\n  }\n}\n', "x.irules")
    assert result.project.syntax_ok
