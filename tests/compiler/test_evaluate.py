"""Evaluation on the IR: conditions, severity, runbook triggers, group keys and time intervals."""

from __future__ import annotations

import datetime
import http.server
import json
import queue
import shutil
import socket
import subprocess
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from compiler import ir
from compiler.api import check_path, check_text
from compiler.evaluate import (
    SeverityDecision,
    TimeIntervals,
    condition_holds,
    evaluate_expression,
    group_key,
    group_labels,
    parse_moment,
    route_key,
    route_path,
    runbooks_triggered,
    service_for,
    severity_of,
    triggered_runbooks,
)
from compiler.expr import MISSING, evaluate_condition
from compiler.lower import expression
from compiler.parse import parse_text
from compiler.router import Router

REPO = Path(__file__).resolve().parents[2]
ALERTMANAGER = shutil.which("prometheus-alertmanager")

POLICY = """
team ops { webhook "https://hooks.example.com/ops" }
team db { webhook "https://hooks.example.com/db" }

service api { team ops  tier 1  match service = "api" }
service cache { team db  tier 3  match service = "cache" }

route {
  receiver ops
  group_by [alertname, cluster]
  match team = "db" -> db {
    match severity =~ "critical|page" -> ops { group_by [alertname] }
  }
}

severity {
  critical when label.severity == "critical"
  high when label.severity == "warning" and service.tier == 1
  medium when label.severity == "warning"
  else classify confidence 80% fallback low
}

runbook restart-api "Restart the API" {
  when label.alertname == "ApiDown" and incident.severity >= "high"
  auto
  step look { run ["true"] }
}

runbook look-at-cache "Look at the cache" {
  when service.name == "cache"
  manual
  step look { run ["true"] }
}

time_interval nights {
  times ["22:00-06:00"]
  location "Europe/Berlin"
}

time_interval weekdays-utc {
  weekdays ["monday:friday"]
}
"""


@pytest.fixture(scope="module")
def ruleset() -> ir.Ruleset:
    result = check_text(POLICY, "policy.irules")
    assert not result.has_errors, [item.message for item in result.diagnostics]
    return result.ruleset()


def condition(text: str) -> ir.Expr:
    """Lower the condition of a one-rule severity block."""
    module = parse_text(f"severity {{\n  low when {text}\n}}\n", "x.irules")
    return expression(module.decls[0].rules[0].condition)


def both(text: str, values: dict) -> tuple[bool, bool]:
    """Evaluate a condition on the AST and on the IR, to show that they agree."""
    module = parse_text(f"severity {{\n  low when {text}\n}}\n", "x.irules")
    node = module.decls[0].rules[0].condition
    return evaluate_condition(node, values), condition_holds(expression(node), values)


# ---------------------------------------------------------------- expressions


def test_label_comparison_reads_labels():
    assert condition_holds(condition('label.team == "db"'), {"labels": {"team": "db"}})


def test_bare_name_is_a_label():
    assert condition_holds(condition('team == "db"'), {"labels": {"team": "db"}})


def test_missing_record_field_is_missing():
    assert evaluate_expression({"path": ["service", "tier"]}, {"service": {"name": "api"}}) is MISSING


def test_duration_literal_compares_with_seconds():
    assert condition_holds(condition("incident.age > 5m"), {"incident": {"age": 301}})


def test_percent_literal_is_a_fraction():
    assert condition_holds(condition("steps.q.value > 80%"), {"steps": {"q": {"value": 0.81}}})


def test_action_parameter_path_reads_params():
    tree = {"op": "==", "left": {"path": ["params", "kind"]}, "right": {"value": "pod", "type": "string"}}
    assert condition_holds(tree, {"params": {"kind": "pod"}, "labels": {"kind": "node"}})


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ('label.env in ["prod", "staging"]', {"labels": {"env": "staging"}}, True),
        ('label.env not in ["prod"]', {"labels": {}}, True),
        ('label.instance =~ "db-[0-9]+"', {"labels": {"instance": "db-12"}}, True),
        ('label.instance =~ "db"', {"labels": {"instance": "my-db"}}, False),
        ('label.instance !~ "db.*"', {"labels": {}}, True),
        ('incident.severity >= "high"', {"incident": {"severity": "critical"}}, True),
        ('incident.severity > "high"', {"incident": {"severity": "medium"}}, False),
        ('not (label.a == "1" or label.b == "2")', {"labels": {"b": "2"}}, False),
        ("service.tier <= 1 and service.tier != 0", {"service": {"tier": 1}}, True),
        ('"ap" in label.service', {"labels": {"service": "api"}}, True),
        ("steps.check.ok == true", {"steps": {"check": {"ok": True}}}, True),
        ("incident.alert_count >= 3", {"incident": {"alert_count": "3"}}, True),
        ("incident.age < 90s", {"incident": {"age": datetime.timedelta(minutes=2)}}, False),
    ],
)
def test_ir_evaluation_agrees_with_ast_evaluation(text: str, values: dict, expected: bool):
    on_ast, on_ir = both(text, values)
    assert on_ast == expected
    assert on_ir == expected


# ---------------------------------------------------------------- services and severity


def test_service_is_found_by_its_matchers(ruleset: ir.Ruleset):
    assert service_for(ruleset, {"service": "cache"}).name == "cache"


def test_alert_without_service_label_has_no_service(ruleset: ir.Ruleset):
    assert service_for(ruleset, {"alertname": "X"}) is None


def test_first_matching_severity_rule_wins(ruleset: ir.Ruleset):
    decision = severity_of(ruleset, {"severity": "critical", "service": "api"}, {})
    assert decision == SeverityDecision("critical", 0, "rule")


def test_severity_rule_reads_the_service(ruleset: ir.Ruleset):
    assert severity_of(ruleset, {"severity": "warning", "service": "api"}, {}) == SeverityDecision("high", 1, "rule")


def test_severity_rule_for_other_tier_falls_through(ruleset: ir.Ruleset):
    assert severity_of(ruleset, {"severity": "warning", "service": "cache"}, {}) == SeverityDecision("medium", 2, "rule")


def test_given_service_replaces_the_lookup(ruleset: ir.Ruleset):
    api = next(service for service in ruleset.services if service.name == "api")
    assert severity_of(ruleset, {"severity": "warning"}, {}, api).level == "high"


def test_unmatched_alert_goes_to_classifier_with_fallback(ruleset: ir.Ruleset):
    decision = severity_of(ruleset, {"severity": "info"}, {})
    assert decision == SeverityDecision("low", None, "classify")
    assert decision.describe() == "classifier (fallback low)"


def test_fixed_fallback_is_reported_as_fallback():
    ruleset = check_text(
        'team ops { webhook "https://hooks.example.com/o" }\nroute { receiver ops }\nseverity {\n  high when label.x == "1"\n  else medium\n}\n'
    ).ruleset()
    assert severity_of(ruleset, {}, {}) == SeverityDecision("medium", None, "fallback")


def test_policy_without_severity_gives_no_level():
    ruleset = check_text('team ops { webhook "https://hooks.example.com/o" }\nroute { receiver ops }\n').ruleset()
    assert severity_of(ruleset, {"severity": "critical"}, {}) == SeverityDecision(None, None, "fallback")


# ---------------------------------------------------------------- runbooks


def test_runbook_trigger_reads_the_decided_severity(ruleset: ir.Ruleset):
    assert runbooks_triggered(ruleset, {"alertname": "ApiDown", "severity": "critical"}, {}) == ["restart-api"]


def test_runbook_does_not_start_below_its_severity(ruleset: ir.Ruleset):
    assert runbooks_triggered(ruleset, {"alertname": "ApiDown", "severity": "warning", "service": "cache"}, {}) == [
        "look-at-cache"
    ]


def test_runbook_mode_is_reported(ruleset: ir.Ruleset):
    started = triggered_runbooks(ruleset, {"alertname": "ApiDown", "severity": "critical", "service": "cache"}, {})
    assert [(runbook.id, runbook.auto) for runbook in started] == [("look-at-cache", False), ("restart-api", True)]


def test_given_severity_replaces_the_decision(ruleset: ir.Ruleset):
    assert runbooks_triggered(ruleset, {"alertname": "ApiDown"}, {}, severity="high") == ["restart-api"]


def test_production_drift_starts_rb002():
    ruleset = check_path(REPO / "examples" / "production", "production").ruleset()
    labels = {"alertname": "TerraformStateDrift", "severity": "critical", "service": "terraform"}
    assert runbooks_triggered(ruleset, labels, {}) == ["rb-002"]


# ---------------------------------------------------------------- group keys


def test_root_group_key_has_empty_route_matchers(ruleset: ir.Ruleset):
    assert group_key([ruleset.route], {"alertname": "X", "cluster": "eu-1", "team": "ops"}) == (
        '{}:{alertname="X", cluster="eu-1"}'
    )


def test_child_route_key_sorts_matchers_by_name(ruleset: ir.Ruleset):
    path = route_path(ruleset.route, "0.0.0")
    assert route_key(path) == '{}/{team="db"}/{severity=~"critical|page"}'


def test_group_key_uses_the_route_group_by(ruleset: ir.Ruleset):
    labels = {"alertname": "X", "cluster": "eu-1", "team": "db", "severity": "page"}
    path = Router(ruleset.route).trace(labels)[0]
    assert group_key(path, labels) == '{}/{team="db"}/{severity=~"critical|page"}:{alertname="X"}'


def test_group_labels_leave_out_absent_and_empty_labels(ruleset: ir.Ruleset):
    assert group_labels(ruleset.route, {"alertname": "X", "cluster": ""}) == {"alertname": "X"}


def test_group_labels_sort_as_rendered_text():
    route = ir.Route(id="0", receiver="r", group_by=["a", "a1"], group_wait_s=0, group_interval_s=1, repeat_interval_s=1)
    # `a1="..."` sorts before `a="..."` because `1` sorts before `=`, as in Alertmanager 0.25.
    assert group_key([route], {"a": "1", "a1": "2"}) == '{}:{a1="2", a="1"}'


def test_group_key_quotes_values_like_go():
    route = ir.Route(id="0", receiver="r", group_by=["..."], group_wait_s=0, group_interval_s=1, repeat_interval_s=1)
    assert group_key([route], {"q": 'say "hi"\\', "t": "a\tb\x01", "u": "ünï"}) == (
        '{}:{q="say \\"hi\\"\\\\", t="a\\tb\\x01", u="ünï"}'
    )


def test_matcher_value_is_escaped_in_route_key():
    child = ir.Route(
        id="0.0",
        receiver="r",
        matchers=[ir.Matcher(name="env", op=ir.MatchOp.NOT_EQUAL, value='dev"x')],
        group_wait_s=0,
        group_interval_s=1,
        repeat_interval_s=1,
    )
    root = ir.Route(id="0", receiver="r", routes=[child], group_wait_s=0, group_interval_s=1, repeat_interval_s=1)
    assert route_key([root, child]) == '{}/{env!="dev\\"x"}'


# ---------------------------------------------------------------- time intervals


def test_moment_without_offset_is_utc():
    assert parse_moment("2025-06-02T10:00:00") == datetime.datetime(2025, 6, 2, 10, tzinfo=datetime.UTC)


def test_moment_with_offset_keeps_it():
    assert parse_moment("2025-06-02T10:00:00+02:00").utcoffset() == datetime.timedelta(hours=2)


def test_bad_moment_is_rejected():
    with pytest.raises(ValueError):
        parse_moment("next tuesday")


def test_interval_counts_in_its_location(ruleset: ir.Ruleset):
    intervals = TimeIntervals(ruleset.time_intervals)
    # 21:30 UTC in June is 23:30 in Berlin.
    assert intervals.contains("nights", parse_moment("2025-06-02T21:30:00Z"))
    assert not intervals.contains("nights", parse_moment("2025-06-02T19:30:00Z"))


def test_interval_without_location_counts_in_utc(ruleset: ir.Ruleset):
    intervals = TimeIntervals(ruleset.time_intervals)
    # Monday 00:30 at +02:00 is Sunday 22:30 UTC.
    assert not intervals.contains("weekdays-utc", parse_moment("2025-06-02T00:30:00+02:00"))


def _route(**options: list[str]) -> ir.Route:
    return ir.Route(id="0.0", receiver="r", group_wait_s=0, group_interval_s=1, repeat_interval_s=1, **options)


def test_route_is_muted_during_its_mute_interval(ruleset: ir.Ruleset):
    silence = TimeIntervals(ruleset.time_intervals).silence(
        _route(mute_time_intervals=["nights"]), parse_moment("2025-06-02T23:00:00+02:00")
    )
    assert silence.kind == "muted"
    assert silence.describe() == "muted during `nights`"


def test_route_sends_outside_its_mute_interval(ruleset: ir.Ruleset):
    route = _route(mute_time_intervals=["nights"])
    assert TimeIntervals(ruleset.time_intervals).silence(route, parse_moment("2025-06-02T12:00:00+02:00")) is None


def test_route_is_silent_outside_its_active_interval(ruleset: ir.Ruleset):
    route = _route(active_time_intervals=["weekdays-utc"])
    silence = TimeIntervals(ruleset.time_intervals).silence(route, parse_moment("2025-06-01T12:00:00Z"))
    assert silence.kind == "inactive"


def test_route_sends_inside_its_active_interval(ruleset: ir.Ruleset):
    route = _route(active_time_intervals=["weekdays-utc"])
    assert TimeIntervals(ruleset.time_intervals).silence(route, parse_moment("2025-06-02T12:00:00Z")) is None


# ---------------------------------------------------------------- group keys against the real Alertmanager

AM_CONFIG = r"""
route:
  receiver: hook
  group_by: [alertname, a, a1, zz]
  group_wait: 0s
  group_interval: 1s
  routes:
    - matchers: ['team="db"', 'severity=~"crit|page"', 'env!="dev\"x"']
      receiver: hook
      group_by: ['...']
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{hook_port}/
"""

AM_POLICY = textwrap.dedent(
    """
    receiver hook { webhook "http://127.0.0.1:1/" }
    route {
      receiver hook
      group_by [alertname, a, a1, zz]
      match team = "db", severity =~ "crit|page", env != "dev\\"x" -> hook { group_by ["..."] }
    }
    """
)

AM_ALERTS = [
    {"alertname": "X", "a": "1", "a1": 'q"uo\\te', "zz": "ünï", "empty": ""},
    {"alertname": "Y", "team": "db", "severity": "page", "env": "prod", "tab": "a\tb"},
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def webhook() -> Iterator[tuple[int, queue.Queue]]:
    """Serve a webhook on 127.0.0.1 that puts each notification's group key on a queue."""
    keys: queue.Queue = queue.Queue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            keys.put(body["groupKey"])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], keys
    server.shutdown()
    server.server_close()


def _wait_listening(process: subprocess.Popen) -> None:
    """Read Alertmanager's log until it reports that it listens. Its stderr closes if it exits instead."""
    assert process.stderr is not None
    for line in process.stderr:
        if "Listening on" in line:
            return
    raise AssertionError("alertmanager exited before listening")


@pytest.mark.slow
@pytest.mark.skipif(ALERTMANAGER is None, reason="prometheus-alertmanager is not installed")
def test_group_keys_match_a_running_alertmanager(tmp_path: Path, webhook: tuple[int, queue.Queue]):
    hook_port, keys = webhook
    config = tmp_path / "alertmanager.yml"
    config.write_text(AM_CONFIG.replace("{hook_port}", str(hook_port)))
    port = _free_port()
    arguments = [f"--config.file={config}", f"--storage.path={tmp_path}", f"--web.listen-address=127.0.0.1:{port}"]
    process = subprocess.Popen(
        [ALERTMANAGER, *arguments, "--cluster.listen-address="], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        _wait_listening(process)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v2/alerts",
            data=json.dumps([{"labels": labels} for labels in AM_ALERTS]).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()
        received = {keys.get(timeout=30), keys.get(timeout=30)}
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()

    ruleset = check_text(AM_POLICY, "am.irules").ruleset()
    router = Router(ruleset.route)
    ours = {group_key(router.trace(labels)[0], labels) for labels in AM_ALERTS}
    assert received == ours
