"""`irules explain`: the route path, receivers, inhibitions, severity and runbooks of one alert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compiler import ir
from compiler.api import check_path
from compiler.evaluate import parse_moment
from runtime.commands.explain import UsageError, explain_alert, expression_text, parse_labels, render_explanation

REPO = Path(__file__).resolve().parent.parent
DRIFT = {"alertname": "TerraformStateDrift", "severity": "critical", "cluster": "eu-1", "service": "terraform"}
WARNING = {"alertname": "HighLatency", "severity": "warning", "cluster": "eu-1", "service": "api"}


@pytest.fixture(scope="module")
def production() -> ir.Ruleset:
    return check_path(REPO / "examples" / "production", "production").ruleset()


@pytest.fixture(scope="module")
def payments() -> ir.Ruleset:
    return check_path(REPO / "examples" / "payments").ruleset()


def irules(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "IRULES_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )


# ---------------------------------------------------------------- the route path


def test_drift_alert_takes_the_path_through_the_critical_route(production: ir.Ruleset):
    [delivery] = explain_alert(production, DRIFT)["routes"]
    assert [level["id"] for level in delivery["levels"]] == ["0", "0.1", "0.1.0"]
    assert [level["receiver"] for level in delivery["levels"]] == ["default", "critical-infrastructure", "infrastructure"]


def test_each_level_shows_the_matcher_that_decided_it(production: ir.Ruleset):
    levels = explain_alert(production, DRIFT)["routes"][0]["levels"]
    assert levels[0]["matchers"] == []
    assert levels[1]["matchers"] == [{"matcher": 'severity="critical"', "actual": "critical", "matched": True}]
    assert levels[2]["matchers"] == [
        {"matcher": 'alertname="TerraformStateDrift"', "actual": "TerraformStateDrift", "matched": True}
    ]


def test_sibling_passed_over_shows_its_failed_matcher(production: ir.Ruleset):
    level = explain_alert(production, DRIFT)["routes"][0]["levels"][1]
    assert level["passed_over"] == [
        {"id": "0.0", "failed": [{"matcher": 'category="security"', "actual": None, "matched": False}]}
    ]


def test_levels_carry_their_source_location(production: ir.Ruleset):
    levels = explain_alert(production, DRIFT)["routes"][0]["levels"]
    assert [level["location"] for level in levels] == [
        "examples/production/routes.irules:4",
        "examples/production/routes.irules:13",
        "examples/production/routes.irules:15",
    ]


def test_group_key_follows_alertmanager(production: ir.Ruleset):
    delivery = explain_alert(production, DRIFT)["routes"][0]
    assert delivery["group_key"] == (
        '{}/{severity="critical"}/{alertname="TerraformStateDrift"}:'
        '{alertname="TerraformStateDrift", cluster="eu-1", service="terraform"}'
    )


def test_unmatched_alert_stays_at_the_root(production: ir.Ruleset):
    [delivery] = explain_alert(production, {"alertname": "Foo"})["routes"]
    assert delivery["route"] == "0"
    assert delivery["unmatched_children"] == ["0.0", "0.1", "0.2", "0.3", "0.4"]


# ---------------------------------------------------------------- receivers, inhibition, severity, runbooks


def test_drift_alert_reaches_infrastructure_with_critical_severity(production: ir.Ruleset):
    explanation = explain_alert(production, DRIFT)
    assert explanation["receivers"] == ["infrastructure"]
    assert explanation["severity"] == {
        "level": "critical",
        "source": "rule",
        "rule": {"number": 1, "condition": 'label.severity == "critical"', "location": "examples/production/severity.irules:5"},
    }
    assert explanation["runbooks"] == [{"id": "rb-002", "title": "Terraform state drift", "mode": "manual"}]


def test_firing_critical_alert_inhibits_the_warning(production: ir.Ruleset):
    explanation = explain_alert(production, WARNING, firing=[{**WARNING, "severity": "critical"}])
    assert explanation["inhibited"] is True
    assert explanation["inhibitions"] == [
        {
            "rule": 1,
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["alertname", "cluster", "service"],
            "source": {"alertname": "HighLatency", "cluster": "eu-1", "service": "api", "severity": "critical"},
        }
    ]


def test_classifier_decision_is_explained(production: ir.Ruleset):
    severity = explain_alert(production, {"alertname": "Foo"})["severity"]
    assert severity == {"level": "medium", "source": "classify", "rule": None, "confidence": 0.8}
    assert "the classifier decides; below 80% confidence: medium" in render_explanation(
        explain_alert(production, {"alertname": "Foo"})
    )


def test_muted_route_is_marked_at_the_moment(payments: ir.Ruleset):
    labels = {"alertname": "CheckoutErrors", "team": "payments", "severity": "critical"}
    # Sunday 03:00 in Berlin is inside the weekly maintenance; 1 June is outside the year-end freeze.
    explanation = explain_alert(payments, labels, moment=parse_moment("2025-06-01T03:00:00+02:00"))
    silenced = {delivery["receiver"]: delivery["silenced"] for delivery in explanation["routes"]}
    assert silenced == {
        "payments": "muted during `weekly-maintenance`",
        "payments-lead": "outside its active time `year-end-freeze`",
    }
    assert explanation["notified"] == []


def test_routes_send_without_a_moment(payments: ir.Ruleset):
    labels = {"alertname": "CheckoutErrors", "team": "payments", "severity": "critical"}
    explanation = explain_alert(payments, labels)
    assert explanation["notified"] == ["payments", "payments-lead"]


# ---------------------------------------------------------------- text


def test_text_shows_the_path_and_the_decisions(production: ir.Ruleset):
    text = render_explanation(explain_alert(production, DRIFT))
    assert "route 0.1.0 -> infrastructure" in text
    assert '  0.1    severity="critical" matched ("critical"); receiver critical-infrastructure' in text
    assert '         passed over 0.0: category="security" failed (absent)' in text
    assert "receivers: infrastructure" in text
    assert "inhibited: no (no --firing alerts given)" in text
    assert (
        'severity: critical, set by severity rule 1: label.severity == "critical" [examples/production/severity.irules:5]' in text
    )
    assert "runbooks: rb-002 (manual)" in text


def test_text_names_the_inhibiting_rule(production: ir.Ruleset):
    text = render_explanation(explain_alert(production, WARNING, firing=[{**WARNING, "severity": "critical"}]))
    assert (
        'inhibited: yes, by inhibit rule 1 (severity="critical" silences severity="warning" on [alertname, cluster, service])'
        in text
    )


def test_expression_text_parenthesises_nested_logic():
    tree = {
        "not": {
            "or": [
                {"op": "==", "left": {"path": ["label", "a"]}, "right": {"value": "1", "type": "string"}},
                {"op": ">", "left": {"path": ["incident", "age"]}, "right": {"value": 300.0, "type": "duration"}},
            ]
        }
    }
    assert expression_text(tree) == 'not (label.a == "1" or incident.age > 300s)'


# ---------------------------------------------------------------- arguments


def test_label_value_may_contain_equals_signs():
    assert parse_labels(["query=a=b", "empty="]) == {"query": "a=b", "empty": ""}


def test_label_without_equals_sign_is_a_usage_error():
    with pytest.raises(UsageError):
        parse_labels(["severity"])


@pytest.mark.slow
def test_cli_json_has_the_same_content(production: ir.Ruleset):
    arguments = [f"{name}={value}" for name, value in DRIFT.items()]
    result = irules("explain", "examples/production", "--env", "production", *arguments, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == explain_alert(production, DRIFT)


@pytest.mark.slow
def test_cli_text_with_firing_alert():
    firing = ",".join(f"{name}={value}" for name, value in {**WARNING, "severity": "critical"}.items())
    result = irules("explain", "examples/production", *[f"{k}={v}" for k, v in WARNING.items()], "--firing", firing)
    assert result.returncode == 0, result.stderr
    assert "inhibited: yes, by inhibit rule 1" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("arguments", [["severity"], ["a=b", "--at", "soon"]], ids=["label", "moment"])
def test_cli_unreadable_argument_exits_2(arguments: list[str]):
    result = irules("explain", "examples/production", *arguments)
    assert result.returncode == 2
    assert result.stderr.startswith("irules: cannot read")
    assert "Traceback" not in result.stderr
