"""The formatter: canonical layout per construct, every comment kept, idempotent, meaning unchanged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compiler import ast
from compiler.errors import CompileFailed
from compiler.fmt import format_source, quote
from compiler.parse import parse_text
from runtime.cli import app

REPO = Path(__file__).resolve().parents[2]


def fmt(text: str) -> str:
    return format_source(text, "f.irules")


def layout(*rows: str) -> str:
    """Join expected output lines, each ending in a newline."""
    return "".join(row + "\n" for row in rows)


def shape(node: object) -> object:
    """Return an AST as nested tuples without spans, with comments reduced to their text."""
    if isinstance(node, list):
        return [shape(item) for item in node]
    if isinstance(node, ast.Module):
        return ("Module", shape(node.decls), [text for _offset, text in node.comments])
    if dataclasses.is_dataclass(node):
        names = [field.name for field in dataclasses.fields(node) if not field.name.endswith(("span", "spans"))]
        return (type(node).__name__, tuple((name, shape(getattr(node, name))) for name in names))
    return node


def node_types(node: object) -> set[str]:
    if isinstance(node, list):
        return set().union(*(node_types(item) for item in node))
    if not dataclasses.is_dataclass(node):
        return set()
    found = {type(node).__name__}
    for field in dataclasses.fields(node):
        found |= node_types(getattr(node, field.name))
    return found


# ---------------------------------------------------------------- one sample with every construct

EVERY_CONSTRUCT = """\
# Every construct of the language, written untidily.
use runbooks [rb-001]
settings { external_url   "https://am.example.com"  smtp "smtp.example.com:587" from "a@example.com" username "u" password secret("SMTP") require_tls true
  slack_api_url secret("SLACK") locale en timezone "UTC" resolve_timeout 1h30m incident_id_format "INC-{n}" }
environment staging { defaults { group_wait 1m } }
defaults { group_by [alertname, "service.name"] group_wait 10s }
team ops { slack "#ops" template critical send_resolved false  pagerduty key secret("K") escalation_policy "P1"  sms
  owns [api] escalation esc members ["a@example.com"] }
receiver pager { webhook url secret("HOOK") }
service api { team ops depends_on [db] tier 1 runbook_url "https://r" match app = "api", env != "dev" description "API" }
route { receiver ops mute_during [nights] match severity = "critical" -> pager { continue group_by [alertname] }
  match team =~ "db" -> ops route -> ops match a = 'quoted' -> ops {} }
inhibit severity = "critical" silences severity = "warning" on [cluster]
time_interval nights { weekdays ["sunday"] period { times ["00:00-06:00"] location "UTC" } }
severity { critical when label.severity == "critical" high when (a or b) and not c in [1, 2.5, 10s, 90%, true]
  else classify confidence 80% fallback low model "m" }
dedup { by [alertname] window 5m flap_window 30m flap_threshold 4 when a == b }
correlate svc { by [cluster] follow_dependencies }
pagerduty { priority critical P1 rule "db" { when label.service == "db" priority P1 severity critical route_to ops suppress annotate "x" } }
slack { app_name "irules" signing_secret secret("S") socket_mode true }
escalation esc { after 5m unacknowledged notify ops after 1h unresolved escalate to 2 after 2h unresolved escalate
  for severity [critical] { after 1m unacknowledged page ops } repeat 3 every 1h }
source ci { path "/ci" auth bearer secret("T") auth hmac secret("H") header "X-Sig" algorithm sha256 prefix "p="
  auth   basic user  "u"   password secret( "B" )
  map { label.alertname = body.name label.x = body["a.b"] } resolved when body.ok == true }
action restart(kind: string matching "^pod$", replicas: int = 3 matching "^[0-9]+$") { run ["kubectl", "{{ kind }}"] exit_codes [0, 1] risk medium mutating }
runbook rb-100 "Restart" { when alertname == "X" auto manual timeout 10m risk low concurrency [service] rate_limit 3 per 1h description "d"
  step top { query prometheus "up == 0" timeout 30s retry 3 backoff 5s on_failure top read_only idempotent output_limit 10 }
  parallel { step a { http POST "http://127.0.0.1:9/x" body "{}" header "A" "B" expect 200 } step b { wait 1m } }
  step c after a, b { approval from ops timeout 1h notify ops template critical approve from ops timeout 5m
    set incident.status = "mitigating" report summary assist focus root-cause restart pod "{{ label.pod }}" replicas = 2 } }
template critical { en { title "Alert" text \"\"\"Line one
line two\"\"\" } }
test "pager" { alert { alertname = "X" } annotations { summary = "s" } also_firing { alertname = "Y" } at "2024-01-01T00:00:00Z"
  expect receivers [pager] expect severity critical expect inhibited expect not inhibited expect runbooks [rb-100] expect group_by [alertname] }
test "outage" { at "2024-01-01T00:00:00Z" fire { alertname = "X" } annotations { summary = "s" } at 0m ack { alertname = "X" } by "alice" at 7m
  resolve { alertname = "X" } at 12m resolve {} by "bob" at "2024-01-01T00:20:00Z" until 1h expect incidents 1 expect page pager at 30s
  expect no page chat expect escalation level 1 to pager at 10m expect no escalation expect runbook rb-100 path [a, b] at 0m expect no runbook rb-1 }
"""


def test_sample_covers_every_node_type():
    every_node = {cls.__name__ for cls in vars(ast).values() if isinstance(cls, type) and issubclass(cls, ast.Node)}
    assert node_types(parse_text(EVERY_CONSTRUCT, "f.irules")) == every_node - {"Node", "Decl"}


def test_every_construct_keeps_its_meaning():
    formatted = fmt(EVERY_CONSTRUCT)
    assert shape(parse_text(formatted, "f.irules")) == shape(parse_text(EVERY_CONSTRUCT, "f.irules"))


def test_every_construct_formats_idempotently():
    formatted = fmt(EVERY_CONSTRUCT)
    assert fmt(formatted) == formatted


# ---------------------------------------------------------------- layout of each construct


def test_settings_print_one_property_per_line():
    source = 'settings { external_url   "https://x"  smtp "h:25" from "a@x" password secret("P") require_tls true locale en }'
    assert fmt(source) == layout(
        "settings {",
        '  external_url "https://x"',
        '  smtp "h:25" from "a@x" password secret("P") require_tls true',
        "  locale en",
        "}",
    )


def test_environment_indents_its_declarations():
    source = "environment prod {\ndefaults { group_wait 1m }\n\n\nsettings { locale de } }"
    assert fmt(source) == layout(
        "environment prod {",
        "  defaults {",
        "    group_wait 1m",
        "  }",
        "",
        "  settings {",
        "    locale de",
        "  }",
        "}",
    )


def test_durations_keep_their_text():
    assert fmt("defaults { group_wait 90s repeat_interval 1h30m }") == (
        "defaults {\n  group_wait 90s\n  repeat_interval 1h30m\n}\n"
    )


def test_label_list_quotes_only_non_names():
    assert fmt('defaults { group_by [ alertname,"service.name" ] }') == (
        'defaults {\n  group_by [alertname, "service.name"]\n}\n'
    )


def test_channel_options_stay_on_one_line():
    source = 'team ops { slack  "#ops"  template critical\n email "a@x" owns [api,db] pagerduty key secret("K") }'
    assert fmt(source) == layout(
        "team ops {",
        '  slack "#ops" template critical',
        '  email "a@x"',
        "  owns [api, db]",
        '  pagerduty key secret("K")',
        "}",
    )


def test_long_channel_splits_its_options():
    key = "K" * 60
    source = f'receiver r {{ pagerduty key secret("{key}") escalation_policy "PPOLICY1" send_resolved true }}'
    assert fmt(source) == layout(
        "receiver r {",
        "  pagerduty",
        f'    key secret("{key}")',
        '    escalation_policy "PPOLICY1"',
        "    send_resolved true",
        "}",
    )


def test_one_line_service_is_split():
    assert fmt('service api { team ops  tier 1  match app = "api" , env!="dev" }') == (
        'service api {\n  team ops\n  tier 1\n  match app = "api", env != "dev"\n}\n'
    )


def test_route_child_without_block_stays_on_one_line():
    source = 'route { receiver ops\nmatch a = "b" -> r\n match severity =~ "crit.*" -> pager { continue }\nroute -> x\nroute { receiver y } }'
    assert fmt(source) == layout(
        "route {",
        "  receiver ops",
        '  match a = "b" -> r',
        '  match severity =~ "crit.*" -> pager {',
        "    continue",
        "  }",
        "  route -> x",
        "  route {",
        "    receiver y",
        "  }",
        "}",
    )


def test_empty_block_prints_as_braces():
    assert fmt('route {\n  match a = "b" -> r {\n  }\n}\nteam x {\n\n}\n') == (
        'route {\n  match a = "b" -> r {}\n}\n\nteam x {}\n'
    )


def test_single_quoted_matcher_value_is_kept():
    assert fmt("route { match a = 'b' -> r }") == "route {\n  match a = 'b' -> r\n}\n"


def test_inhibit_prints_on_one_line():
    source = 'inhibit severity="critical" silences severity = "warning"   on [ cluster ,service ]'
    assert fmt(source) == 'inhibit severity = "critical" silences severity = "warning" on [cluster, service]\n'


def test_time_interval_keeps_field_order():
    source = 'time_interval t { period { times ["1"] } weekdays ["sunday"] period { months ["may"] } }'
    assert fmt(source) == layout(
        "time_interval t {",
        "  period {",
        '    times ["1"]',
        "  }",
        '  weekdays ["sunday"]',
        "  period {",
        '    months ["may"]',
        "  }",
        "}",
    )


def test_severity_rules_and_fallbacks():
    source = 'severity { critical   when label.severity=="critical" else classify confidence 80% fallback low }'
    assert fmt(source) == (
        'severity {\n  critical when label.severity == "critical"\n  else classify confidence 80% fallback low\n}\n'
    )


def test_severity_with_fixed_fallback_level():
    assert fmt("severity { low when true else medium }") == "severity {\n  low when true\n  else medium\n}\n"


def test_grouping_with_and_without_name():
    source = "dedup { by [a] window 5m }\ncorrelate svc { follow_dependencies when x > 1 }"
    assert fmt(source) == layout(
        "dedup {",
        "  by [a]",
        "  window 5m",
        "}",
        "",
        "correlate svc {",
        "  follow_dependencies",
        "  when x > 1",
        "}",
    )


def test_pagerduty_priorities_and_rule_blocks():
    source = 'pagerduty { priority critical P1 rule "db" { when a == "b" severity critical suppress } }'
    assert fmt(source) == layout(
        "pagerduty {",
        "  priority critical P1",
        '  rule "db" {',
        '    when a == "b"',
        "    severity critical",
        "    suppress",
        "  }",
        "}",
    )


def test_slack_bot_settings():
    source = 'slack { app_name "irules" token secret("T") socket_mode false }'
    assert fmt(source) == 'slack {\n  app_name "irules"\n  token secret("T")\n  socket_mode false\n}\n'


def test_escalation_steps_and_blocks():
    source = (
        "escalation e { after 5m  unacknowledged notify ops after 1h unresolved escalate after 2h unresolved escalate to 2 "
        "for severity [critical,high] { after 1m unacknowledged page ops } repeat 3 every 1h repeat 2 }"
    )
    assert fmt(source) == layout(
        "escalation e {",
        "  after 5m unacknowledged notify ops",
        "  after 1h unresolved escalate",
        "  after 2h unresolved escalate to 2",
        "  for severity [critical, high] {",
        "    after 1m unacknowledged page ops",
        "  }",
        "  repeat 3 every 1h",
        "  repeat 2",
        "}",
    )


def test_source_with_auth_and_map_block():
    source = (
        'source ci { path "/ci" auth hmac secret("H") header "X-Sig" algorithm sha256 '
        'map { label.a = body.name label.b = body["x.y"] } resolved when body.ok == true }'
    )
    assert fmt(source) == layout(
        "source ci {",
        '  path "/ci"',
        '  auth hmac secret("H") header "X-Sig" algorithm sha256',
        "  map {",
        "    label.a = body.name",
        '    label.b = body["x.y"]',
        "  }",
        "  resolved when body.ok == true",
        "}",
    )


def test_source_with_basic_auth():
    source = 'source cloudwatch {auth   basic   user "sns"\n    password   secret( "CW_PASSWORD" )  auth bearer secret("T")}'
    assert fmt(source) == layout(
        "source cloudwatch {",
        '  auth basic user "sns" password secret("CW_PASSWORD")',
        '  auth bearer secret("T")',
        "}",
    )


def test_basic_auth_options_keep_their_order():
    source = 'source ci { auth basic password secret("P") user "ci" }'
    assert fmt(source) == layout("source ci {", '  auth basic password secret("P") user "ci"', "}")


def test_action_with_parameters():
    source = 'action scale(kind: string matching "^x$",replicas:int = 3 matching "^[0-9]+$"){ run ["a", "b"] mutating }'
    assert fmt(source) == layout(
        'action scale(kind: string matching "^x$", replicas: int = 3 matching "^[0-9]+$") {',
        '  run ["a", "b"]',
        "  mutating",
        "}",
    )


def test_long_parameter_list_is_split():
    pattern = "^" + "[a-z]" * 20 + "$"
    source = f'action a(first: string matching "{pattern}", second: string = "x" matching "{pattern}") {{ mutating }}'
    assert fmt(source) == layout(
        "action a(",
        f'  first: string matching "{pattern}",',
        f'  second: string = "x" matching "{pattern}"',
        ") {",
        "  mutating",
        "}",
    )


def test_runbook_steps_and_parallel_groups():
    source = (
        'runbook rb-1 "Restart" { auto timeout 10m rate_limit 3 per 1h '
        "step a { wait 1m retry 3 backoff 5s approval from ops timeout 1h } "
        'parallel { step b { query prometheus "up" } } '
        'step c after a, b { notify ops template t assist focus root-cause set incident.status = "done" } }'
    )
    assert fmt(source) == layout(
        'runbook rb-1 "Restart" {',
        "  auto",
        "  timeout 10m",
        "  rate_limit 3 per 1h",
        "  step a {",
        "    wait 1m",
        "    retry 3 backoff 5s",
        "    approval from ops timeout 1h",
        "  }",
        "  parallel {",
        "    step b {",
        '      query prometheus "up"',
        "    }",
        "  }",
        "  step c after a, b {",
        "    notify ops template t",
        "    assist focus root-cause",
        '    set incident.status = "done"',
        "  }",
        "}",
    )


def test_action_call_keeps_named_arguments():
    source = 'runbook r { step s { restart pod "{{ label.pod }}" replicas=2 } }'
    assert fmt(source) == ('runbook r {\n  step s {\n    restart pod "{{ label.pod }}" replicas = 2\n  }\n}\n')


def test_long_http_step_splits_its_options():
    url = "http://127.0.0.1:9901/" + "x" * 60
    source = f'action a() {{ http PUT "{url}" header "Content-Type" "application/json" expect 200 }}'
    assert fmt(source) == layout(
        "action a() {",
        f'  http PUT "{url}"',
        '    header "Content-Type" "application/json"',
        "    expect 200",
        "}",
    )


def test_template_keeps_block_strings_verbatim():
    source = 'template t { en { title "T"   text """  Line one\n    line \\"two\\"""" } }'
    assert fmt(source) == layout(
        "template t {",
        "  en {",
        '    title "T"',
        '    text """  Line one',
        '    line \\"two\\""""',
        "  }",
        "}",
    )


def test_test_block_with_label_sets():
    source = 'test "t" { alert { alertname="X" , severity = "critical" } at "2024-01-01T00:00:00Z" expect not inhibited expect receivers [a,b] }'
    assert fmt(source) == layout(
        'test "t" {',
        '  alert { alertname = "X", severity = "critical" }',
        '  at "2024-01-01T00:00:00Z"',
        "  expect not inhibited",
        "  expect receivers [a, b]",
        "}",
    )


def test_long_label_set_is_split():
    pairs = [f'label{index} = "value{index}"' for index in range(8)]
    assert fmt(f'test "t" {{ alert {{ {", ".join(pairs)} }} }}') == layout(
        'test "t" {',
        "  alert {",
        *(f"    {pair}," for pair in pairs[:-1]),
        f"    {pairs[-1]}",
        "  }",
        "}",
    )


def test_empty_label_set_prints_as_braces():
    assert fmt('test "t" { alert { } }') == 'test "t" {\n  alert {}\n}\n'


def test_use_prints_on_one_line():
    assert fmt("use  runbooks [ rb-001,rb-002 ]") == "use runbooks [rb-001, rb-002]\n"


def test_empty_file_stays_empty():
    assert fmt("\n\n") == ""


# ---------------------------------------------------------------- expressions


@pytest.mark.parametrize(
    ("written", "printed"),
    [
        ("(a or b) and c", "(a or b) and c"),
        ("a or (b and c)", "a or b and c"),
        ("((a == b))", "a == b"),
        ("not (a and b)", "not (a and b)"),
        ("not (a == b)", "not a == b"),
        ("not not a", "not not a"),
        ("(not a) == b", "(not a) == b"),
        ("(a == b) == c", "(a == b) == c"),
        ("a or (b or c)", "a or b or c"),
        ("a not in [1, (b or c)]", "a not in [1, b or c]"),
        ('label["x.y"] =~ "a" and label["plain"] != "b"', 'label["x.y"] =~ "a" and label.plain != "b"'),
    ],
)
def test_expression_parentheses_follow_precedence(written, printed):
    assert fmt(f"severity {{ high when {written} }}") == f"severity {{\n  high when {printed}\n}}\n"


def test_condition_nested_to_the_limit_is_formatted():
    condition = "not " * 60 + "a"
    assert fmt(f"severity {{ high when {condition} }}") == f"severity {{\n  high when {condition}\n}}\n"


def test_condition_nested_past_the_limit_is_not_formatted():
    with pytest.raises(CompileFailed) as raised:
        fmt("severity { high when " + "not " * 3000 + "a }")
    assert [item.code for item in raised.value.diagnostics] == ["IR0108"]


# ---------------------------------------------------------------- strings


@pytest.mark.parametrize(
    ("written", "printed"),
    [
        (r'"plain"', r'"plain"'),
        (r'"say \"hi\""', r'"say \"hi\""'),
        (r'"a\\.b"', r'"a\.b"'),
        (r'"a\.b"', r'"a\.b"'),
        (r'"ends with \\"', r'"ends with \\"'),
        (r'"\\n is literal"', r'"\\n is literal"'),
        (r'"\u0041"', r'"A"'),
        ('"tab\there"', r'"tab\there"'),
        (r'"line\nbreak"', r'"line\nbreak"'),
    ],
)
def test_string_uses_fewest_escapes(written, printed):
    assert fmt(f"team t {{ email {written} }}") == f"team t {{\n  email {printed}\n}}\n"


def test_quote_escapes_control_characters():
    assert quote("a\x01b\0") == '"a\\u0001b\\0"'


def test_quote_keeps_unicode_as_written():
    assert quote("Störung ✓") == '"Störung ✓"'


# ---------------------------------------------------------------- blank lines


def test_blank_lines_in_block_collapse_to_one():
    assert fmt('team t {\n  email "a"\n\n\n\n  slack "b"\n}\n') == 'team t {\n  email "a"\n\n  slack "b"\n}\n'


def test_no_blank_line_is_added_inside_a_block():
    assert fmt('team t { email "a" slack "b" }') == 'team t {\n  email "a"\n  slack "b"\n}\n'


def test_blank_lines_at_block_edges_are_removed():
    assert fmt('team t {\n\n  email "a"\n\n}\n') == 'team t {\n  email "a"\n}\n'


def test_declarations_are_one_blank_line_apart():
    assert fmt("team a {}\nteam b {}\n\n\n\nteam c {}") == "team a {}\n\nteam b {}\n\nteam c {}\n"


# ---------------------------------------------------------------- comments


def test_leading_comment_stays_before_its_declaration():
    assert fmt("# the ops team\nteam ops {}\n") == "# the ops team\nteam ops {}\n"


def test_comment_between_declarations_joins_next():
    assert fmt("team a {}\n# about b\nteam b {}\n") == "team a {}\n\n# about b\nteam b {}\n"


def test_trailing_comment_stays_on_its_line():
    source = 'team t {\n  email "a"    # the inbox\n}\n'
    assert fmt(source) == 'team t {\n  email "a"  # the inbox\n}\n'


def test_comment_takes_next_node_indentation():
    source = 'team t {\n# about slack\n        slack "#t"\n}\n'
    assert fmt(source) == 'team t {\n  # about slack\n  slack "#t"\n}\n'


def test_comment_before_closing_brace_stays_inside():
    source = 'team t {\n  slack "#t"\n      # last words\n}\n'
    assert fmt(source) == 'team t {\n  slack "#t"\n  # last words\n}\n'


def test_comment_keeps_an_empty_block_open():
    assert fmt("team t { # nothing yet\n}\n") == "team t {  # nothing yet\n}\n"


def test_comment_after_opening_brace_stays():
    assert fmt('team t { # the team\n  slack "#t"\n}\n') == 'team t {  # the team\n  slack "#t"\n}\n'


def test_comment_after_closing_brace_stays():
    assert fmt('team t { slack "#t" }  # done\n') == 'team t {\n  slack "#t"\n}  # done\n'


def test_comment_at_end_of_file_is_kept():
    assert fmt("team t {}\n\n# the end") == "team t {}\n\n# the end\n"


def test_comment_inside_a_condition_moves_above_it():
    source = 'severity {\n  high when a == "1"  # first part\n    and b == "2"\n}\n'
    assert fmt(source) == 'severity {\n  # first part\n  high when a == "1" and b == "2"\n}\n'


def test_comment_in_label_set_keeps_it_split():
    source = 'test "t" {\n  alert {\n    a = "1",  # why\n    b = "2"\n  }\n}\n'
    assert fmt(source) == source


def test_file_of_comments_only_is_kept():
    assert fmt("# one\n\n\n# two\n") == "# one\n\n# two\n"


# ---------------------------------------------------------------- errors


def test_file_with_syntax_errors_is_not_formatted():
    with pytest.raises(CompileFailed) as failure:
        fmt("team a { slack }\nteam b { owns }\n")
    assert [(item.code, item.span.line, item.span.column) for item in failure.value.diagnostics] == [("IR0103", 2, 15)]


# ---------------------------------------------------------------- the project's own rule files


def _parseable_rule_files() -> list[Path]:
    """Return the .irules files of rules/, examples/ and tests/ that parse, as they are when tests run."""
    found = []
    for folder in ("rules", "examples", "tests"):
        for path in sorted((REPO / folder).rglob("*.irules")):
            try:
                parse_text(path.read_text(encoding="utf-8"), str(path))
            except Exception:
                continue
            found.append(path)
    return found


RULE_FILES = _parseable_rule_files()
RULE_FILE_IDS = [str(path.relative_to(REPO)) for path in RULE_FILES]


@pytest.mark.parametrize("path", RULE_FILES, ids=RULE_FILE_IDS)
def test_rules_file_formats_idempotently(path):
    once = format_source(path.read_text(encoding="utf-8"), str(path))
    assert format_source(once, str(path)) == once


@pytest.mark.parametrize("path", RULE_FILES, ids=RULE_FILE_IDS)
def test_rules_file_keeps_its_meaning(path):
    text = path.read_text(encoding="utf-8")
    formatted = format_source(text, str(path))
    assert shape(parse_text(formatted, str(path))) == shape(parse_text(text, str(path)))


# ---------------------------------------------------------------- the command


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return lambda *args: CliRunner().invoke(app, ["fmt", *args])


def test_fmt_rewrites_files_in_place(tmp_path, run):
    (tmp_path / "a.irules").write_text('team a { slack "#a" }\n', encoding="utf-8")
    result = run(".")
    assert result.exit_code == 0
    assert result.stdout == "reformatted a.irules\n"
    assert (tmp_path / "a.irules").read_text(encoding="utf-8") == 'team a {\n  slack "#a"\n}\n'


def test_fmt_check_lists_changes_without_writing(tmp_path, run):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.irules").write_text("team a {  }\n", encoding="utf-8")
    (tmp_path / "rules" / "b.irules").write_text("team b {}\n", encoding="utf-8")
    result = run("--check", "rules")
    assert result.exit_code == 1
    assert result.stdout == "would reformat rules/a.irules\n"
    assert (tmp_path / "rules" / "a.irules").read_text(encoding="utf-8") == "team a {  }\n"


def test_fmt_check_passes_on_formatted_files(tmp_path, run):
    (tmp_path / "a.irules").write_text("team a {}\n", encoding="utf-8")
    result = run("--check", "a.irules")
    assert result.exit_code == 0
    assert result.stdout == ""


def test_fmt_reports_syntax_errors_without_writing(tmp_path, run):
    (tmp_path / "bad.irules").write_text("team b { owns }\n", encoding="utf-8")
    result = run("bad.irules")
    assert result.exit_code == 1
    assert result.stderr.startswith("bad.irules:1:15: error[IR0103]: ")
    assert (tmp_path / "bad.irules").read_text(encoding="utf-8") == "team b { owns }\n"


def test_fmt_reports_a_file_that_is_not_utf8(tmp_path, run):
    (tmp_path / "bin.irules").write_bytes(b"team \xff {}\n")
    result = run("bin.irules")
    assert result.exit_code == 1
    assert result.stderr.startswith("error[IR1001]: file `bin.irules` is not valid UTF-8 (byte 5)")


def test_fmt_missing_path_is_usage_error(run):
    result = run("missing.irules")
    assert result.exit_code == 2
    assert result.stderr == "irules: path not found: missing.irules\n"


def test_fmt_without_path_is_usage_error(run):
    assert run().exit_code == 2
