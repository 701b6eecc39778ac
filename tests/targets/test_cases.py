"""Alertmanager configurations that confused users, each pinned to the value Alertmanager 0.25 gives.

Routing cases import the YAML, and our router on the imported rules must give
the receivers stated here. Where amtool is installed, `amtool config routes
test` must give them too, on the original file and on the file we generate.
Validation cases state Alertmanager's error message, which amtool must
print, and the error that importing the same YAML gives in irules: either the
importer rejects it, or `irules check` reports it on the imported rules. The
checker's own tests (tests/compiler) cover the same rules written in .irules.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from compiler import ir
from compiler.api import check_text
from compiler.diagnostics import Diagnostic, Severity
from compiler.importer import ImportFailed, import_alertmanager
from compiler.router import Router
from targets.alertmanager import render
from tests.targets.amtool import check_config, requires_amtool, route_receivers

Case = tuple[dict[str, str], list[str]]


def config_file(folder: Path, text: str, name: str = "alertmanager.yml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def imported_ruleset(text: str) -> ir.Ruleset:
    result = check_text(import_alertmanager(textwrap.dedent(text)).text, "imported.irules")
    assert not result.has_errors, [item.message for item in result.diagnostics]
    return result.ruleset()


def imported_diagnostics(text: str) -> list[Diagnostic]:
    return check_text(import_alertmanager(textwrap.dedent(text)).text, "imported.irules").diagnostics


def error_codes(text: str) -> list[str]:
    return [item.code for item in imported_diagnostics(text) if item.severity is Severity.ERROR]


def warning_codes(text: str) -> list[str]:
    return [item.code for item in imported_diagnostics(text) if item.severity is Severity.WARNING]


def assert_routes_like_amtool(text: str, cases: list[Case], folder: Path) -> None:
    """Assert that amtool on the original and on our generated YAML routes each label set to its receivers."""
    original = config_file(folder, text, "original.yml")
    generated = folder / "generated.yml"
    generated.write_text(render(imported_ruleset(text)), encoding="utf-8")
    for labels, receivers in cases:
        assert route_receivers(original, labels) == receivers, labels
        assert route_receivers(generated, labels) == receivers, labels


def assert_amtool_rejects(text: str, message: str, folder: Path) -> None:
    checked = check_config(config_file(folder, text))
    assert checked.returncode != 0
    assert f"FAILED: {message}\n" in checked.stdout


# ---------------------------------------------------------------- continue on siblings and on the root

SIBLINGS = """\
route:
  receiver: team-test
  routes:
    - {match: {notify: team-test}, receiver: team-test, continue: true}
    - {match: {notify: chat-main}, receiver: chat-main, continue: true}
    - {match: {notify: chat-net}, receiver: chat-net, continue: true}
    - {match: {notify: chat-data}, receiver: chat-data, continue: true}
    - {match: {notify_team: chat-data}, receiver: chat-data, continue: true}
receivers: [{name: team-test}, {name: chat-main}, {name: chat-net}, {name: chat-data}]
"""
SIBLING_CASES: list[Case] = [
    ({"notify": "chat-main", "notify_team": "chat-data"}, ["chat-main", "chat-data"]),
    ({"notify": "other"}, ["team-test"]),
    # Two different routes match, so the receiver gets the alert twice, in two groups.
    ({"notify": "chat-data", "notify_team": "chat-data"}, ["chat-data", "chat-data"]),
]
ROOT_CONTINUE = "route: {receiver: a, continue: true}\nreceivers: [{name: a}]\n"


@pytest.mark.parametrize(("labels", "receivers"), SIBLING_CASES)
def test_continuing_siblings_route_in_tree_order(labels: dict[str, str], receivers: list[str]):
    assert Router(imported_ruleset(SIBLINGS).route).receivers(labels) == receivers


@requires_amtool
def test_continuing_siblings_match_amtool(tmp_path: Path):
    assert_routes_like_amtool(SIBLINGS, SIBLING_CASES, tmp_path)


def test_root_continue_is_a_check_error():
    assert error_codes(ROOT_CONTINUE) == ["IR0404"]


@requires_amtool
def test_root_continue_is_rejected_by_amtool(tmp_path: Path):
    assert_amtool_rejects(ROOT_CONTINUE, "cannot have continue in root route", tmp_path)


# ---------------------------------------------------------------- continue on a parent route

NESTED = """\
route:
  receiver: entry
  group_by: ['alertname']
  routes:
  - receiver: chat
    continue: true
    routes:
      - match_re: {alertname: Node.*}
        receiver: sre-email
        continue: true
        routes:
        - match: {severity: critical}
          receiver: sre-pager
receivers: [{name: entry}, {name: chat}, {name: sre-email}, {name: sre-pager}]
"""
# The fix recommended to users: the chat route becomes a childless first sibling.
FLAT = """\
route:
  receiver: entry
  group_by: ['alertname']
  routes:
  - receiver: chat
    continue: true
  - match_re: {alertname: Node.*}
    receiver: sre-email
    continue: true
    routes:
    - match: {severity: critical}
      receiver: sre-pager
receivers: [{name: entry}, {name: chat}, {name: sre-email}, {name: sre-pager}]
"""
NODE_DOWN_CRITICAL = {"alertname": "NodeDown", "severity": "critical"}
NODE_DOWN_WARNING = {"alertname": "NodeDown", "severity": "warning"}
DISK_FULL_CRITICAL = {"alertname": "DiskFull", "severity": "critical"}
NESTED_CASES: list[Case] = [
    (NODE_DOWN_CRITICAL, ["sre-pager"]),
    (NODE_DOWN_WARNING, ["sre-email"]),
    (DISK_FULL_CRITICAL, ["chat"]),
]
FLAT_CASES: list[Case] = [
    (NODE_DOWN_CRITICAL, ["chat", "sre-pager"]),
    (NODE_DOWN_WARNING, ["chat", "sre-email"]),
    (DISK_FULL_CRITICAL, ["chat"]),
]


@pytest.mark.parametrize(("text", "cases"), [(NESTED, NESTED_CASES), (FLAT, FLAT_CASES)], ids=["nested", "flat"])
def test_parent_receiver_only_gets_unmatched_alerts(text: str, cases: list[Case]):
    router = Router(imported_ruleset(text).route)
    for labels, receivers in cases:
        assert router.receivers(labels) == receivers, labels


@requires_amtool
@pytest.mark.parametrize(("text", "cases"), [(NESTED, NESTED_CASES), (FLAT, FLAT_CASES)], ids=["nested", "flat"])
def test_parent_continue_matches_amtool(text: str, cases: list[Case], tmp_path: Path):
    assert_routes_like_amtool(text, cases, tmp_path)


def test_nested_parents_are_flagged_as_fallbacks():
    found = [item for item in imported_diagnostics(NESTED) if item.code == "IR0407"]
    assert [item.message for item in found] == [
        "receiver `chat` gets only the alerts that no child route matches",
        "receiver `sre-email` gets only the alerts that no child route matches",
    ]


def test_flat_chat_route_is_not_flagged():
    found = [item for item in imported_diagnostics(FLAT) if item.code == "IR0407"]
    assert [item.message for item in found] == ["receiver `sre-email` gets only the alerts that no child route matches"]


# ---------------------------------------------------------------- a literal asterisk

ASTERISK = """\
route:
  receiver: executer
  routes:
    - {match: {alertname: "*"}, receiver: executer, continue: true}
    - {matchers: [alertname="*"], receiver: monitoring, continue: true}
    - {match_re: {alertname: ".*"}, receiver: chat, continue: true}
    - {matchers: [alertname=~".+"], receiver: ops, continue: true}
    - {match: {alertname: HostOutOfMemory}, receiver: sistemas}
receivers: [{name: executer}, {name: monitoring}, {name: chat}, {name: ops}, {name: sistemas}]
"""
ASTERISK_CASES: list[Case] = [
    ({"alertname": "HostOutOfMemory"}, ["chat", "ops", "sistemas"]),
    ({"alertname": "DiskFull"}, ["chat", "ops"]),
    ({"alertname": "*"}, ["executer", "monitoring", "chat", "ops"]),
    # `.*` matches the empty value of an absent label, `.+` does not.
    ({"severity": "critical"}, ["chat"]),
]


@pytest.mark.parametrize(("labels", "receivers"), ASTERISK_CASES)
def test_asterisk_is_equality_with_a_star(labels: dict[str, str], receivers: list[str]):
    assert Router(imported_ruleset(ASTERISK).route).receivers(labels) == receivers


@requires_amtool
def test_asterisk_matches_amtool(tmp_path: Path):
    assert_routes_like_amtool(ASTERISK, ASTERISK_CASES, tmp_path)


def test_both_asterisk_forms_warn():
    assert warning_codes(ASTERISK) == ["IR0306", "IR0306"]


# ---------------------------------------------------------------- matcher quoting

UNQUOTED_COMMA = """\
route:
  receiver: default
  routes:
    - receiver: infra-chat
      matchers: [ "service != processing,speech" ]
receivers: [{name: default}, {name: infra-chat}]
"""
QUOTED = """\
route:
  receiver: default
  routes:
    - receiver: infra-chat
      matchers: [ 'service != "processing,speech"' ]
    - receiver: day-incident
      matchers: [ "label = 'atlas-test'" ]
receivers: [{name: default}, {name: infra-chat}, {name: day-incident}]
"""
QUOTED_CASES: list[Case] = [
    ({"service": "processing"}, ["infra-chat"]),
    ({"service": "speech"}, ["infra-chat"]),
    ({"service": "processing,speech"}, ["default"]),
    ({"service": "processing,speech", "label": "atlas-test"}, ["default"]),
    ({"service": "processing,speech", "label": "'atlas-test'"}, ["day-incident"]),
]


def test_unquoted_comma_is_rejected_on_import():
    with pytest.raises(ImportFailed) as caught:
        import_alertmanager(UNQUOTED_COMMA)
    assert str(caught.value) == "`route.routes[0].matchers[0]`: bad matcher format: speech"


@requires_amtool
def test_unquoted_comma_is_rejected_by_amtool(tmp_path: Path):
    assert_amtool_rejects(UNQUOTED_COMMA, "bad matcher format: speech", tmp_path)


@pytest.mark.parametrize(("labels", "receivers"), QUOTED_CASES)
def test_quoted_comma_and_single_quotes_are_literal(labels: dict[str, str], receivers: list[str]):
    assert Router(imported_ruleset(QUOTED).route).receivers(labels) == receivers


def test_single_quotes_stay_in_the_value():
    route = imported_ruleset(QUOTED).route
    assert route.routes[1].matchers == [ir.Matcher(name="label", op=ir.MatchOp.EQUAL, value="'atlas-test'")]


def test_generated_matchers_are_double_quoted():
    routes = yaml.safe_load(render(imported_ruleset(QUOTED)))["route"]["routes"]
    assert [route["matchers"] for route in routes] == [['service!="processing,speech"'], ["label=\"'atlas-test'\""]]


@requires_amtool
def test_quoting_matches_amtool(tmp_path: Path):
    assert_routes_like_amtool(QUOTED, QUOTED_CASES, tmp_path)


# ---------------------------------------------------------------- the root route and undefined receivers

ROOT_WITHOUT_RECEIVER = 'route:\n  group_by: [alertname]\n  routes: [{matchers: [a="1"], receiver: a}]\nreceivers: [{name: a}]\n'
ROOT_WITH_MATCHERS = 'route: {receiver: default, matchers: [env="prod"]}\nreceivers: [{name: default}]\n'
UNDEFINED_NESTED_RECEIVER = """\
route: {receiver: web-hook, routes: [{matchers: [team="db"], routes: [{matchers: [foo="bar"], receiver: fake}]}]}
receivers: [{name: web-hook}]
"""
ROOT_MUTED = """\
route: {receiver: default, mute_time_intervals: [offhours]}
receivers: [{name: default}]
time_intervals: [{name: offhours, time_intervals: [{weekdays: [saturday, sunday]}]}]
"""


@pytest.mark.parametrize(
    ("text", "code"),
    [(ROOT_WITHOUT_RECEIVER, "IR0403"), (UNDEFINED_NESTED_RECEIVER, "IR0203"), (ROOT_MUTED, "IR0405")],
    ids=["root-without-receiver", "undefined-nested-receiver", "root-muted"],
)
def test_root_and_receiver_mistakes_are_check_errors(text: str, code: str):
    assert error_codes(text) == [code]


def test_root_matchers_are_rejected_on_import():
    with pytest.raises(ImportFailed) as caught:
        import_alertmanager(ROOT_WITH_MATCHERS)
    assert str(caught.value) == "`route`: root route must not have any matchers"


def test_route_without_receiver_inherits_it():
    router = Router(
        imported_ruleset(UNDEFINED_NESTED_RECEIVER.replace("[{name: web-hook}]", "[{name: web-hook}, {name: fake}]")).route
    )
    assert router.receivers({"team": "db", "foo": "bar"}) == ["fake"]
    assert router.receivers({"team": "db"}) == ["web-hook"]


@requires_amtool
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ROOT_WITHOUT_RECEIVER, "root route must specify a default receiver"),
        (ROOT_WITH_MATCHERS, "root route must not have any matchers"),
        (UNDEFINED_NESTED_RECEIVER, 'undefined receiver "fake" used in route'),
        (ROOT_MUTED, "root route must not have any mute time intervals"),
    ],
    ids=["root-without-receiver", "root-with-matchers", "undefined-nested-receiver", "root-muted"],
)
def test_root_and_receiver_mistakes_are_rejected_by_amtool(text: str, message: str, tmp_path: Path):
    assert_amtool_rejects(text, message, tmp_path)


# ---------------------------------------------------------------- duplicate receivers

DUPLICATE_RECEIVERS = """\
route: {receiver: default}
receivers:
  - name: default
  - name: test
    webhook_configs: [{url: "http://127.0.0.1:1/a"}]
  - name: test
    webhook_configs: [{url: "http://127.0.0.1:1/b"}]
"""


def test_duplicate_receiver_points_at_both():
    found = [item for item in imported_diagnostics(DUPLICATE_RECEIVERS) if item.code == "IR0204"]
    assert [item.message for item in found] == ["receiver `test` is declared twice"]
    assert found[0].span.line == 7
    assert [label.span.line for label in found[0].labels] == [3]


@requires_amtool
def test_duplicate_receiver_is_rejected_by_amtool(tmp_path: Path):
    assert_amtool_rejects(DUPLICATE_RECEIVERS, 'notification config name "test" is not unique', tmp_path)


# ---------------------------------------------------------------- group_by

GROUP_BY_CASES = [
    ("['...', 'alertname']", "IR0304", "cannot have wildcard group_by (`...`) and other other labels at the same time"),
    ("['alertname', 'alertname']", "IR0305", 'duplicated label "alertname" in group_by'),
    ("['alert-name', 'alertname']", "IR0302", 'invalid label name "alert-name" in group_by list'),
]


def group_by_config(labels: str) -> str:
    return f"route: {{receiver: default, group_by: {labels}}}\nreceivers: [{{name: default}}]\n"


@pytest.mark.parametrize(("labels", "code", "message"), GROUP_BY_CASES, ids=["wildcard-and-name", "repeated", "hyphen"])
def test_bad_group_by_is_a_check_error(labels: str, code: str, message: str):
    assert error_codes(group_by_config(labels)) == [code]


@requires_amtool
@pytest.mark.parametrize(("labels", "code", "message"), GROUP_BY_CASES, ids=["wildcard-and-name", "repeated", "hyphen"])
def test_bad_group_by_is_rejected_by_amtool(labels: str, code: str, message: str, tmp_path: Path):
    assert_amtool_rejects(group_by_config(labels), message, tmp_path)


# ---------------------------------------------------------------- time intervals


def night_config(period: str, reference: str = "night") -> str:
    return (
        f'route:\n  receiver: default\n  routes: [{{matchers: [a="1"], mute_time_intervals: [{reference}]}}]\n'
        "receivers: [{name: default}]\n"
        f"time_intervals: [{{name: night, time_intervals: [{period}]}}]\n"
    )


NIGHT_ACROSS_MIDNIGHT = night_config("{times: [{start_time: '22:00', end_time: '06:00'}]}")
NIGHT_ENDING_AT_ZERO = night_config(
    "{times: [{start_time: '00:00', end_time: '06:00'}, {start_time: '22:00', end_time: '00:00'}]}"
)
SEOUL_NIGHT = night_config("{times: [{start_time: '13:00', end_time: '24:00'}], location: Asia/Seoul}")
TIME_ERROR_CASES = [
    (
        night_config("{times: [{start_time: '9:00', end_time: '17:00'}]}"),
        "IR0309",
        "couldn't parse timestamp 9:00, invalid format",
    ),
    (
        night_config("{times: [{start_time: '09:00', end_time: '24:01'}]}"),
        "IR0309",
        "couldn't parse timestamp 24:01, invalid format",
    ),
    (SEOUL_NIGHT.replace("Asia/Seoul", "KST"), "IR0310", "unknown time zone KST"),
    (night_config("{weekdays: ['fri']}"), "IR0309", "fri is not a valid weekday"),
    (
        night_config("{weekdays: ['Friday']}", reference="off_hourz"),
        "IR0203",
        'undefined time interval "off_hourz" used in route',
    ),
]
TIME_ERROR_IDS = ["single-digit-hour", "after-midnight", "zone-abbreviation", "weekday-abbreviation", "undefined-interval"]


@pytest.mark.parametrize("text", [NIGHT_ACROSS_MIDNIGHT, NIGHT_ENDING_AT_ZERO], ids=["22-to-06", "22-to-00"])
def test_range_across_midnight_is_rejected_on_import(text: str):
    with pytest.raises(ImportFailed) as caught:
        import_alertmanager(text)
    assert "start time cannot be equal or greater than end time" in str(caught.value)


@requires_amtool
@pytest.mark.parametrize("text", [NIGHT_ACROSS_MIDNIGHT, NIGHT_ENDING_AT_ZERO], ids=["22-to-06", "22-to-00"])
def test_range_across_midnight_is_rejected_by_amtool(text: str, tmp_path: Path):
    assert_amtool_rejects(text, "start time cannot be equal or greater than end time", tmp_path)


@pytest.mark.parametrize(("text", "code", "message"), TIME_ERROR_CASES, ids=TIME_ERROR_IDS)
def test_bad_time_interval_is_a_check_error(text: str, code: str, message: str):
    assert error_codes(text) == [code]


@requires_amtool
@pytest.mark.parametrize(("text", "code", "message"), TIME_ERROR_CASES, ids=TIME_ERROR_IDS)
def test_bad_time_interval_is_rejected_by_amtool(text: str, code: str, message: str, tmp_path: Path):
    assert_amtool_rejects(text, message, tmp_path)


@pytest.mark.parametrize("weekdays", ["['Friday']", "['monday:friday']"])
def test_full_weekday_names_import_clean(weekdays: str):
    assert error_codes(night_config(f"{{weekdays: {weekdays}}}")) == []


@requires_amtool
def test_seoul_afternoon_window_round_trips(tmp_path: Path):
    generated = config_file(tmp_path, render(imported_ruleset(SEOUL_NIGHT)))
    assert check_config(config_file(tmp_path, SEOUL_NIGHT, "original.yml")).returncode == 0
    assert check_config(generated).returncode == 0
    period = yaml.safe_load(generated.read_text(encoding="utf-8"))["time_intervals"][0]["time_intervals"][0]
    assert period == {"times": [{"start_time": "13:00", "end_time": "24:00"}], "location": "Asia/Seoul"}


@requires_amtool
def test_night_window_in_irules_becomes_two_ranges(tmp_path: Path):
    source = (
        'receiver default { webhook "https://hooks.example.com/alerts" }\n'
        'route { receiver default\n  match a = "1" { mute_during [night] }\n}\n'
        'time_interval night { times ["22:00-06:00"] }\n'
    )
    generated = config_file(tmp_path, render(check_text(source, "night.irules").ruleset()))
    period = yaml.safe_load(generated.read_text(encoding="utf-8"))["time_intervals"][0]["time_intervals"][0]
    assert period["times"] == [{"start_time": "22:00", "end_time": "24:00"}, {"start_time": "00:00", "end_time": "06:00"}]
    assert check_config(generated).returncode == 0


# ---------------------------------------------------------------- YAML scalars

SCALARS = """\
route:
  receiver: default
  routes:
    - match: {country: NO}
      receiver: norway
    - match: {paging: yes}
      receiver: pager
    - match: {code: 0123}
      receiver: code
    - matchers: [severity="warning"]
      receiver: default
      mute_time_intervals: [off_hours]
receivers: [{name: default}, {name: norway}, {name: pager}, {name: code}]
mute_time_intervals:
  - name: off_hours
    time_intervals:
      - times:
        - start_time: 13:00
          end_time: 24:00
"""
SCALAR_CASES: list[Case] = [
    ({"country": "NO"}, ["norway"]),
    ({"paging": "yes"}, ["pager"]),
    ({"code": "0123"}, ["code"]),
    ({"code": "83"}, ["default"]),
]


def test_unquoted_scalars_import_as_strings():
    ruleset = imported_ruleset(SCALARS)
    assert [route.matchers[0].value for route in ruleset.route.routes[:3]] == ["NO", "yes", "0123"]
    assert ruleset.time_intervals[0].periods[0].times == [ir.TimeRange(start_minute=780, end_minute=1440)]


def test_generated_yaml_keeps_strings_for_pyyaml():
    document = yaml.safe_load(render(imported_ruleset(SCALARS)))
    assert [route["matchers"] for route in document["route"]["routes"][:3]] == [
        ['country="NO"'],
        ['paging="yes"'],
        ['code="0123"'],
    ]
    assert document["time_intervals"][0]["time_intervals"][0]["times"] == [{"start_time": "13:00", "end_time": "24:00"}]


@requires_amtool
def test_unquoted_scalars_match_amtool(tmp_path: Path):
    assert_routes_like_amtool(SCALARS, SCALAR_CASES, tmp_path)
