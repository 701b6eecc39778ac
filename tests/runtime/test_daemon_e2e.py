"""End to end: every vendor sample posted to a real daemon running examples/production, read back through the API and the CLI.

The daemon is a child process on a free 127.0.0.1 port with a SQLite store in a
temporary folder. Every expected severity, team, receiver and grouping below is
worked out from the production rules and the payloads. The comment beside each
check names the rule that decides it. SNS envelopes carry AWS signatures that
only an SNS host can vouch for, and the daemon fetches signing certificates from
SNS hosts alone, so those samples go through `irules handle` on a local store.
"""

from __future__ import annotations

import collections
import datetime
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from openapi_spec_validator import validate as validate_openapi
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from compiler import ir
from compiler.api import check_path
from runtime.cli import app
from tests.runtime.daemon_process import FIXTURES, REPO, DaemonProcess, WebhookSigner, fixture_bytes, run_cli

pytestmark = pytest.mark.slow

PRODUCTION = REPO / "examples" / "production"
ENVIRONMENT = "production"
# Settings of the developer's shell that the CLI would read instead of its options.
CLI_ENVIRONMENT: dict[str, str | None] = {
    name: None
    for name in ("IRULES_STATE", "IRULES_DATABASE", "IRULES_DAEMON", "IRULES_API_TOKEN", "IRULES_ACTOR", "IRULES_HOOK_TOKEN")
}
CREATED_TITLE = "Checkout slow for some customers"


@dataclass(frozen=True)
class Delivery:
    """One webhook request: where it goes, which declared source authenticates it, and how many alerts it carries."""

    path: str
    source: str
    body: bytes
    alerts: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Scenario:
    daemon: DaemonProcess
    ruleset: ir.Ruleset
    rules: Path
    deliveries: list[Delivery]


def group_alerts(relative: str) -> int:
    return len(json.loads(fixture_bytes(relative))["alerts"])


def ci_event(check: str, level: str, region: str, status: str, message: str) -> bytes:
    """Return a body for the `ci-webhook` source, shaped as its `map` block reads it."""
    return json.dumps(
        {"check_name": check, "level": level, "runner": {"region": region}, "status": status, "message": message}
    ).encode()


def production_deliveries(rules: Path) -> list[Delivery]:
    """Return every sample, in the order posted: firings before the resolutions that end them."""
    deliveries = [
        Delivery("/hooks/alertmanager", "alertmanager", fixture_bytes(name), group_alerts(name))
        for name in (
            "alertmanager/firing-two-alerts.json",
            "alertmanager/resolved-one-alert.json",
            "alertmanager/firing-newer-fields-v0.34.json",
            "alertmanager/firing-unicode-empty-long.json",
        )
    ]
    deliveries += [
        Delivery("/hooks/grafana", "grafana", fixture_bytes(name), group_alerts(name))
        for name in ("grafana/firing.json", "grafana/resolved.json", "grafana/firing-nodata-unicode-truncated.json")
    ]
    deliveries += [
        Delivery("/hooks/azure", "azure", fixture_bytes(f"azure/{name}"), 1)
        for name in ("common-metric-fired.json", "common-metric-resolved.json", "common-metric-dynamic-unicode.json")
    ]
    # The same alarm by EventBridge and by SNS raw message delivery (which SNS posts as text/plain), then its OK.
    deliveries += [
        Delivery("/hooks/cloudwatch", "cloudwatch", fixture_bytes("cloudwatch/eventbridge-alarm-state-change.json"), 1),
        Delivery(
            "/hooks/cloudwatch",
            "cloudwatch",
            fixture_bytes("cloudwatch/sns-alarm-raw-delivery.json"),
            1,
            {"content-type": "text/plain; charset=UTF-8", "x-amz-sns-rawdelivery": "true"},
        ),
        Delivery("/hooks/cloudwatch", "cloudwatch", fixture_bytes("cloudwatch/eventbridge-alarm-state-change-ok.json"), 1),
    ]
    examples = rules / "alerts"
    deliveries += [
        Delivery("/hooks/alertmanager", "alertmanager", (examples / name).read_bytes(), 1)
        for name in ("alertmanager-api-latency.json", "alertmanager-database-down.json")
    ]
    ci_bodies = [
        (examples / "ci-webhook-failed.json").read_bytes(),
        ci_event("ToolCriticalError", "critical", "eu-1", "failed", "lint crashed"),
        ci_event("FlakyTests", "warning", "eu-1", "failed", "3 flaky tests"),
        ci_event("FlakyTests", "warning", "us-1", "failed", "2 flaky tests"),
        ci_event("ToolCriticalError", "critical", "eu-1", "failed", "lint crashed"),
        ci_event("ToolCriticalError", "critical", "eu-1", "passed", "lint passed"),
    ]
    deliveries += [Delivery("/webhooks/ci", "ci-webhook", body, 1) for body in ci_bodies]
    return deliveries


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Post every delivery to one daemon and wait until the pipeline has applied them all."""
    base = tmp_path_factory.mktemp("e2e")
    rules = base / "rules"
    shutil.copytree(PRODUCTION, rules, ignore=shutil.ignore_patterns("build"))
    ruleset = check_path(rules, ENVIRONMENT).ruleset()
    signer = WebhookSigner(ruleset.sources, base / "secrets")
    deliveries = production_deliveries(rules)
    with DaemonProcess(rules, base / "state", environment=ENVIRONMENT, secrets_dir=signer.folder) as daemon:
        for delivery in deliveries:
            response = daemon.post(
                delivery.path, delivery.body, {**delivery.headers, **signer.headers(delivery.source, delivery.body)}
            )
            assert response.status_code == 202, f"{delivery.path}: {response.status_code} {response.text}"
            assert response.json()["alerts"] == delivery.alerts, response.text
        daemon.wait_until_applied()
        yield Scenario(daemon, ruleset, rules, deliveries)


def shown_incidents(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """Return every incident with its alerts and timeline, oldest first."""
    return [daemon.incident(row["id"]) for row in reversed(daemon.incidents())]


def incident_of(daemon: DaemonProcess, alert_name: str, **labels: str) -> dict[str, Any]:
    """Return the one incident holding an alert of this name (and these labels)."""
    found = [
        incident
        for incident in shown_incidents(daemon)
        if any(alert["name"] == alert_name and labels.items() <= alert["labels"].items() for alert in incident["alerts"])
    ]
    assert len(found) == 1, f"{len(found)} incidents hold alert {alert_name} {labels}: {[item['id'] for item in found]}"
    return found[0]


def alert_named(incident: dict[str, Any], name: str, **labels: str) -> dict[str, Any]:
    matching = [alert for alert in incident["alerts"] if alert["name"] == name and labels.items() <= alert["labels"].items()]
    assert len(matching) == 1, f"incident {incident['id']} has {len(matching)} alerts {name} {labels}"
    return matching[0]


def timeline_kinds_with_impact(incident: dict[str, Any]) -> list[str]:
    return [entry["kind"] for entry in incident["timeline"]]


def timeline_kinds(incident: dict[str, Any]) -> list[str]:
    """Return the kinds of the incident's own and its alerts' entries.

    Runbook, notification, impact and classifier entries have tests of their own. Impact entries
    are left out because where they fall depends on how the daemon batched the alerts.
    """
    return [
        entry["kind"]
        for entry in incident["timeline"]
        if entry["kind"].split(".")[0] in ("incident", "alert")
        and entry["kind"] not in ("incident.impact", "incident.classified")
    ]


def irules(*args: str) -> Result:
    """Run an `irules` command in this process. The daemon it talks to is still a real child process."""
    result = CliRunner().invoke(app, list(args), env=CLI_ENVIRONMENT)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def irules_json(*args: str) -> Any:
    result = irules(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ---------------------------------------------------------------- Alertmanager


def test_alertmanager_group_shares_one_incident(scenario: Scenario):
    incident = incident_of(scenario.daemon, "HighErrorRate")

    # Without a `service` label the by-service correlation is skipped, so the route's
    # group_by [alertname, cluster, service] puts both instances in one group.
    assert {alert["fingerprint"] for alert in incident["alerts"]} == {"1b9ae21d2a813e82", "ce3bf5da5cbba24b"}
    assert incident["title"] == "HighErrorRate: 5xx ratio above 5% on checkout-api-0.example.com:8080"
    # `critical when label.severity == "critical"` sets the level, and `match severity = "critical"` sends it to critical-infrastructure.
    assert incident["severity"] == "critical"
    assert incident["severity_source"] == "rule"
    assert incident["receivers"] == ["critical-infrastructure"]
    # The `team` label is "payments", which is not a team of these rules, and no service matches.
    assert incident["team"] is None
    assert incident["services"] == []


def test_alertmanager_resolution_ends_one_alert(scenario: Scenario):
    incident = incident_of(scenario.daemon, "HighErrorRate")

    assert alert_named(incident, "HighErrorRate", instance="checkout-api-0.example.com:8080")["status"] == "resolved"
    assert alert_named(incident, "HighErrorRate", instance="checkout-api-1.example.com:8080")["status"] == "firing"
    assert incident["alert_count"] == 2
    assert incident["firing_count"] == 1
    assert incident["status"] == "detected"
    assert timeline_kinds(incident) == ["incident.detected", "alert.added", "alert.added", "alert.resolved"]
    assert {entry["actor"] for entry in incident["timeline"]} == {"source:alertmanager"}


def test_warnings_without_service_go_to_default(scenario: Scenario):
    crash_loop = incident_of(scenario.daemon, "KubePodCrashLooping")
    disk = incident_of(scenario.daemon, "DiskWillFillIn4Hours")

    assert crash_loop["id"] != disk["id"]
    for incident in (crash_loop, disk):
        # `medium when label.severity == "warning"`: no service, so not the tier-1 rule.
        assert incident["severity"] == "medium"
        assert incident["severity_source"] == "rule"
        # `match severity = "warning", service =~ ".+"` needs a service label, so the root receiver applies.
        assert incident["receivers"] == ["default"]
        assert incident["team"] is None
    assert disk["title"] == "DiskWillFillIn4Hours: ディスク残量が4時間以内に枯渇する見込み 💾🔥"
    # The payload's second alert is a resolution of an alert never seen firing: it joins nothing.
    assert [alert["labels"]["instance"] for alert in disk["alerts"]] == ["db-1.example.com:9100"]
    assert disk["alert_count"] == 1


def test_dependent_services_share_incident(scenario: Scenario):
    incident = incident_of(scenario.daemon, "APIHighLatency")

    # `correlate by-service` with `follow_dependencies`: api depends on database, same cluster.
    assert alert_named(incident, "DatabaseConnectionsExhausted")["labels"]["service"] == "database"
    assert incident["services"] == ["api", "database"]
    assert incident["correlation"] == "by-service:cluster=prod-eu-1,service=api"
    # api is tier 1, so its warning is high. The database alert is critical and raises the incident.
    assert alert_named(incident, "APIHighLatency")["severity"] == "high"
    assert incident["severity"] == "critical"
    assert incident["team"] == "application"
    assert incident["receivers"] == ["application", "critical-infrastructure"]
    # The database alert comes before the severity raise it caused.
    assert timeline_kinds(incident) == ["incident.detected", "alert.added", "alert.added", "incident.severity"]
    assert incident["timeline"][3]["data"] == {"from": "high", "to": "critical"}
    # The api depends on the database, so the database explains both alerts.
    assert incident["impact"]["alerting"] == ["api", "database"]
    assert incident["impact"]["causes"][0]["service"] == "database"
    assert incident["impact"]["causes"][0]["explains"] == ["api", "database"]
    assert timeline_kinds_with_impact(incident).count("incident.impact") >= 1


# ---------------------------------------------------------------- Grafana


def test_grafana_rule_instances_share_incident(scenario: Scenario):
    incident = incident_of(scenario.daemon, "High memory usage")

    # Two zones of one Grafana rule: group_by [alertname, cluster, service] has only alertname to tell them apart.
    assert {alert["labels"]["zone"]: alert["status"] for alert in incident["alerts"]} == {"eu-1": "resolved", "us-1": "firing"}
    assert incident["firing_count"] == 1
    assert incident["status"] == "detected"
    # No severity label and no rule holds: `else classify ... fallback medium`; with no classifier and no
    # severity from Grafana, the fallback level applies.
    assert incident["severity"] == "medium"
    assert incident["severity_source"] == "fallback"
    assert incident["receivers"] == ["default"]
    assert timeline_kinds(incident) == ["incident.detected", "alert.added", "alert.added", "alert.resolved"]
    assert {entry["actor"] for entry in incident["timeline"] if entry["kind"] != "incident.classified"} == {"source:grafana"}
    # No severity rule matches, so the classifier was asked; the shipped model is not sure enough to decide.
    assert incident["triage"]["review"] is True
    assert incident["triage"]["classifier"]["accepted"] is False


def test_grafana_no_data_alert_opens_own_incident(scenario: Scenario):
    incident = incident_of(scenario.daemon, "DatasourceNoData")

    assert incident["title"] == "DatasourceNoData: Keine Daten seit 10 Minuten — データなし <b>bold?</b>"
    assert alert_named(incident, "DatasourceNoData")["labels"]["rulename"] == "Kafka-Lag 📈 (Ü)"
    assert incident["severity"] == "medium"
    assert incident["alert_count"] == 1


# ---------------------------------------------------------------- Azure Monitor


def test_azure_severity_comes_from_sender(scenario: Scenario):
    cpu = incident_of(scenario.daemon, "vm-checkout-cpu-high")
    egress = incident_of(scenario.daemon, "storage-egress-anomaly ✨")

    # No rule holds, so Azure's own level comes before the classifier. Sev1 is an error (high) and Sev4 is info (low).
    assert (cpu["severity"], cpu["severity_source"]) == ("high", "source")
    assert (egress["severity"], egress["severity_source"]) == ("low", "source")
    assert alert_named(cpu, "vm-checkout-cpu-high")["labels"]["resource"] == "vm-checkout-01"
    assert egress["status"] == "detected"


def test_azure_resolution_resolves_incident(scenario: Scenario):
    incident = incident_of(scenario.daemon, "vm-checkout-cpu-high")

    assert incident["status"] == "resolved"
    assert incident["resolved_at"] is not None
    assert incident["firing_count"] == 0
    assert timeline_kinds(incident) == ["incident.detected", "alert.added", "alert.resolved", "incident.status"]
    assert incident["timeline"][-1]["actor"] == "irules"


# ---------------------------------------------------------------- CloudWatch


def test_cloudwatch_forms_share_alarm_identity(scenario: Scenario):
    incident = incident_of(scenario.daemon, "web-cpu-high")
    alert = alert_named(incident, "web-cpu-high")

    # EventBridge and SNS raw delivery of one alarm ARN are one alert: the second is a repeat.
    assert incident["alert_count"] == 1
    assert alert["occurrences"] == 2
    assert alert["labels"]["region"] == "us-east-1"
    assert alert["labels"]["metric"] == "AWS/EC2:CPUUtilization"
    assert alert["labels"]["dimension_AutoScalingGroupName"] == "web-asg"
    # The OK that resolved the alarm is its latest state.
    assert alert["labels"]["cloudwatch_state"] == "OK"
    # ALARM carries no sender severity, so the classifier's fallback applies.
    assert (incident["severity"], incident["severity_source"]) == ("medium", "fallback")
    # The EventBridge OK resolves it, and with it the incident.
    assert alert["status"] == "resolved"
    assert incident["status"] == "resolved"
    assert timeline_kinds(incident) == ["incident.detected", "alert.added", "alert.resolved", "incident.status"]


def test_sns_samples_through_handle(scenario: Scenario, tmp_path: Path):
    def handle(relative: str) -> dict[str, Any]:
        return irules_json(
            "handle",
            "--alert-data",
            str(FIXTURES / "cloudwatch" / relative),
            "--rules",
            str(scenario.rules),
            "--env",
            ENVIRONMENT,
            "--state",
            str(tmp_path / "state"),
        )

    alarm = handle("sns-alarm.json")
    assert (alarm["source"], alarm["kind"]) == ("cloudwatch", "alerts")
    (web,) = alarm["incidents"]
    # The alarm's description is the summary, so the title does not name a state that changes.
    assert web["title"] == "web-cpu-high: CPU above 80% for 10 minutes on the web tier"
    assert (web["severity"], web["severity_source"]) == ("medium", "fallback")

    (payments,) = handle("sns-alarm-unicode.json")["incidents"]
    payments_alert = alert_named(payments, "payments-latency-p99 / eu-west-1 / 決済")
    assert payments_alert["labels"]["region"] == "eu-west-1"
    assert payments_alert["labels"]["dimension_Service"] == "checkout"
    assert payments["id"] != web["id"]

    # An OK for an alarm this store never saw firing changes nothing.
    assert handle("sns-alarm-ok-metric-math.json")["incidents"] == []
    confirmation = handle("sns-subscription-confirmation.json")
    assert (confirmation["kind"], confirmation["incidents"]) == ("subscription_confirmation", [])

    # The EventBridge OK of the same alarm ARN resolves what SNS opened.
    (resolved,) = handle("eventbridge-alarm-state-change-ok.json")["incidents"]
    assert resolved["id"] == web["id"]
    assert resolved["status"] == "resolved"


# ---------------------------------------------------------------- the custom CI source


def test_ci_webhook_groups_by_cluster_and_service(scenario: Scenario):
    eu = incident_of(scenario.daemon, "ToolCriticalError")
    us = incident_of(scenario.daemon, "FlakyTests", cluster="us-1")
    deploy = incident_of(scenario.daemon, "DeployPipelineFailed")

    # `correlate by-service` joins the eu-1 alerts of service ci, while us-1 and prod-eu-1 open other incidents.
    assert alert_named(eu, "FlakyTests")["labels"]["cluster"] == "eu-1"
    assert len({eu["id"], us["id"], deploy["id"]}) == 3
    # The service ci is owned by devops in every case.
    assert {eu["team"], us["team"], deploy["team"]} == {"devops"}
    # The critical route's child sends ToolCriticalError to devops, and warnings of ci go to devops, which owns it.
    assert (eu["severity"], eu["receivers"]) == ("critical", ["devops"])
    assert (us["severity"], us["receivers"]) == ("medium", ["devops"])
    assert (deploy["severity"], deploy["receivers"]) == ("medium", ["devops"])


def test_ci_webhook_repeat_and_resolution(scenario: Scenario):
    incident = incident_of(scenario.daemon, "ToolCriticalError")
    tool = alert_named(incident, "ToolCriticalError")

    # The repeat is folded in, and `resolved when body.status == "passed"` resolves the alert with the same labels.
    assert tool["occurrences"] == 2
    assert tool["status"] == "resolved"
    assert alert_named(incident, "FlakyTests")["status"] == "firing"
    assert incident["status"] == "detected"
    assert timeline_kinds(incident) == ["incident.detected", "alert.added", "alert.added", "alert.resolved"]
    own = [entry for entry in incident["timeline"] if entry["kind"] in timeline_kinds(incident)]
    assert {entry["actor"] for entry in own} == {"source:ci-webhook"}


# ---------------------------------------------------------------- the whole store


def test_incident_ids_follow_rules_format(scenario: Scenario):
    from_alerts = [row for row in shown_incidents(scenario.daemon) if row["title"] != CREATED_TITLE]
    id_format = scenario.ruleset.settings.incident_id_format

    assert len(from_alerts) == 12
    for number, incident in enumerate(from_alerts, start=1):
        year = datetime.datetime.fromisoformat(incident["created_at"]).year
        assert incident["id"] == id_format.format(year=year, number=number)


def test_cli_list_matches_api(scenario: Scenario):
    url = scenario.daemon.url

    assert irules_json("incidents", "list", "--daemon", url) == scenario.daemon.incidents()
    devops = irules_json("incidents", "list", "--daemon", url, "--team", "devops")
    assert sorted(row["title"] for row in devops) == [
        "DeployPipelineFailed: deploy of api 2026.03.1 failed in stage migrate",
        "FlakyTests: 2 flaky tests",
        "ToolCriticalError: lint crashed",
    ]
    open_ids = {row["id"] for row in irules_json("incidents", "list", "--daemon", url, "--open")}
    assert incident_of(scenario.daemon, "web-cpu-high")["id"] not in open_ids
    assert incident_of(scenario.daemon, "KubePodCrashLooping")["id"] in open_ids


def test_cli_process_lists_incidents(scenario: Scenario):
    result = run_cli("incidents", "list", "--daemon", scenario.daemon.url, "--format", "json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == scenario.daemon.incidents()


def test_cli_show_matches_api(scenario: Scenario):
    incident = incident_of(scenario.daemon, "APIHighLatency")
    shown = irules_json("incidents", "show", incident["id"], "--daemon", scenario.daemon.url)

    # The daemon keeps working between the two reads (a notification group's wait may end), so the
    # timeline the CLI reads later may have grown; what both read must be the same.
    assert {name: value for name, value in shown.items() if name != "timeline"} == {
        name: value for name, value in incident.items() if name != "timeline"
    }
    assert shown["timeline"][: len(incident["timeline"])] == incident["timeline"]
    text = irules("incidents", "show", incident["id"], "--daemon", scenario.daemon.url)
    assert text.exit_code == 0, text.output
    assert "Severity raised from high to critical by alert DatabaseConnectionsExhausted" in text.stdout


def _same_through_daemon(scenario: Scenario, *command: str) -> tuple[str, str]:
    """Run `command` on the store and through the daemon, and return both outputs from a moment the store held still.

    The daemon keeps working (a notification group's wait may end), so the command reads the
    store before and after it sends the request to the daemon, until both local reads agree.
    """
    for _attempt in range(5):
        before = irules(*command, "--state", str(scenario.daemon.state))
        remote = irules(*command, "--daemon", scenario.daemon.url)
        after = irules(*command, "--state", str(scenario.daemon.state))
        assert (before.exit_code, remote.exit_code, after.exit_code) == (0, 0, 0), remote.output
        if before.stdout == after.stdout:
            return before.stdout, remote.stdout
    raise AssertionError("the store kept changing while the command ran")


@pytest.mark.parametrize(("locale", "document_format"), [("en", "md"), ("de", "html")])
def test_post_mortem_through_daemon_matches_store(scenario: Scenario, locale: str, document_format: str):
    incident = incident_of(scenario.daemon, "APIHighLatency")
    command = ("post-mortem", "--incident-id", incident["id"], "--output", "-", "--locale", locale, "--format", document_format)

    local, remote = _same_through_daemon(scenario, *command)

    assert remote == local
    assert incident["id"] in remote
    assert ("Zusammenfassung" if locale == "de" else "Summary") in remote


def test_metrics_through_daemon_match_store(scenario: Scenario):
    command = ("metrics", "--format", "json", "--timeframe", "7d")
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)

    local, remote = _same_through_daemon(scenario, *command, "--until", until.isoformat())

    assert remote == local
    assert json.loads(remote)["incidents"]["total"] == len(scenario.daemon.incidents())


def test_report_responses_match_openapi_schema(scenario: Scenario):
    from jsonschema import Draft202012Validator

    document = scenario.daemon.client.get("/openapi.json").json()
    incident = incident_of(scenario.daemon, "APIHighLatency")
    now = datetime.datetime.now(datetime.UTC)
    window = {"start": (now - datetime.timedelta(days=1)).isoformat(), "end": now.isoformat()}
    responses = {
        "/api/v1/incidents/{incident}/post-mortem": scenario.daemon.client.get(f"/api/v1/incidents/{incident['id']}/post-mortem"),
        "/api/v1/reports/metrics": scenario.daemon.client.get("/api/v1/reports/metrics", params=window),
    }

    for path, response in responses.items():
        assert response.status_code == 200, response.text
        declared = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        schema = strict_schema(declared, document)
        errors = [f"{list(error.path)}: {error.message}" for error in Draft202012Validator(schema).iter_errors(response.json())]
        assert errors == [], path
    assert responses["/api/v1/reports/metrics"].json()["counts"]["total"] == len(scenario.daemon.incidents())


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"end": "2026-03-01T00:00:00Z"}, "`start` is required: an ISO 8601 moment such as 2026-03-01T00:00:00Z"),
        ({"start": "yesterday", "end": "2026-03-01T00:00:00Z"}, "`start` is not an ISO 8601 moment: 'yesterday'"),
        (
            {"start": "2026-03-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"},
            "the window's start 2026-03-01T00:00:00+00:00 is not before its end 2026-03-01T00:00:00+00:00",
        ),
        (
            # Unbounded, the report built a row per day: 62 MB for year 1 to 9999.
            {"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T00:00:00Z"},
            "the window from 0001-01-01T00:00:00+00:00 to 9999-12-31T00:00:00+00:00 is longer than 3660 days (about 10 years)",
        ),
    ],
)
def test_metrics_report_rejects_bad_window(scenario: Scenario, params: dict[str, str], reason: str):
    response = scenario.daemon.client.get("/api/v1/reports/metrics", params=params)

    assert response.status_code == 400
    assert response.json() == {"error": reason}


def test_typed_store_option_wins_over_variable(scenario: Scenario, tmp_path: Path):
    state = str(tmp_path / "elsewhere")
    url = scenario.daemon.url

    through_daemon = run_cli("incidents", "list", "--daemon", url, "--format", "json", extra_environment={"IRULES_STATE": state})
    both_variables = run_cli("incidents", "list", extra_environment={"IRULES_STATE": state, "IRULES_DAEMON": url})
    both_flags = run_cli("incidents", "list", "--state", state, "--daemon", url)

    assert through_daemon.returncode == 0, through_daemon.stderr
    # The daemon's incidents, not an empty store at IRULES_STATE. Only the ids are compared: the
    # daemon's escalation and notification work may change other fields between the two reads.
    assert [incident["id"] for incident in json.loads(through_daemon.stdout)] == [
        incident["id"] for incident in scenario.daemon.incidents()
    ]
    assert (both_variables.returncode, both_variables.stderr) == (
        2,
        "irules: pass exactly one of --state DIR, --database URL or --daemon URL (IRULES_STATE and IRULES_DAEMON were given)\n",
    )
    assert (both_flags.returncode, both_flags.stderr) == (
        2,
        "irules: pass exactly one of --state DIR, --database URL or --daemon URL (--state and --daemon were given)\n",
    )
    assert not Path(state).exists()


def test_post_mortem_of_unknown_incident_through_daemon(scenario: Scenario):
    result = irules("post-mortem", "--incident-id", "INC-1999-0001", "--output", "-", "--daemon", scenario.daemon.url)

    assert result.exit_code == 1
    assert result.stderr == "irules: the daemon responded with HTTP 404: incident 'INC-1999-0001' not found\n"


def test_cli_lifecycle_through_daemon(scenario: Scenario):
    url = scenario.daemon.url
    reference = incident_of(scenario.daemon, "FlakyTests", cluster="us-1")["id"]

    acknowledged = irules_json("ack", "--incident-id", reference, "--daemon", url, "--as", "alice")
    assert (acknowledged["status"], acknowledged["acknowledged_by"]) == ("investigating", "alice")

    updated = irules_json(
        "update",
        "--incident-id",
        reference,
        "--assignee",
        "bob",
        "--severity",
        "high",
        "--note",
        "runner pool drained",
        "--daemon",
        url,
        "--as",
        "alice",
    )
    assert (updated["assignee"], updated["severity"], updated["severity_source"]) == ("bob", "high", "person")

    resolved = irules_json("resolve", "--incident-id", reference, "--note", "runner replaced", "--daemon", url, "--as", "bob")
    assert resolved["status"] == "resolved"
    assert resolved["resolved_at"] is not None

    rejected_change = irules("update", "--incident-id", reference, "--status", "detected", "--daemon", url, "--as", "bob")
    assert rejected_change.exit_code == 1
    assert "cannot go from resolved to detected" in rejected_change.output

    entries = scenario.daemon.incident(reference)["timeline"]
    # Notification and escalation entries interleave with these; they have tests of their own.
    timeline = [
        entry
        for entry in entries
        if entry["kind"].startswith("incident.") and entry["kind"] not in ("incident.impact", "incident.classified")
    ]
    assert [(entry["kind"], entry["actor"]) for entry in timeline[1:]] == [
        ("incident.acknowledged", "alice"),
        ("incident.assigned", "alice"),
        ("incident.severity", "alice"),
        ("incident.note", "alice"),
        ("incident.status", "bob"),
    ]
    # The CI alert still fires at its source; the timeline records that, and the resolution is kept.
    assert (
        timeline[-1]["message"] == "Status changed from investigating to resolved: runner replaced (1 of its alerts still firing)"
    )


def test_cli_create_through_daemon(scenario: Scenario):
    created = irules_json(
        "create",
        "--title",
        CREATED_TITLE,
        "--severity",
        "high",
        "--services",
        "api",
        "--team",
        "application",
        "--daemon",
        scenario.daemon.url,
        "--as",
        "carol",
    )

    shown = scenario.daemon.incident(created["id"])
    assert (shown["status"], shown["severity"], shown["severity_source"]) == ("detected", "high", "person")
    assert (shown["team"], shown["services"]) == ("application", ["api"])
    assert [(entry["kind"], entry["actor"]) for entry in shown["timeline"]] == [("incident.detected", "carol")]
    year = datetime.datetime.fromisoformat(shown["created_at"]).year
    assert shown["id"] == scenario.ruleset.settings.incident_id_format.format(year=year, number=shown["number"])


# ---------------------------------------------------------------- metrics and the API description


def metric_samples(daemon: DaemonProcess) -> dict[str, list[Any]]:
    response = daemon.client.get("/metrics")
    assert response.status_code == 200, response.text
    samples: dict[str, list[Any]] = collections.defaultdict(list)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name].append(sample)
    return samples


def test_metrics_count_payloads_by_source(scenario: Scenario):
    samples = metric_samples(scenario.daemon)

    accepted = {
        sample.labels["source"]: sample.value
        for sample in samples["irules_payloads_total"]
        if sample.labels["outcome"] == "accepted"
    }
    assert accepted == dict(collections.Counter(delivery.source for delivery in scenario.deliveries))
    assert all(sample.labels["outcome"] == "accepted" for sample in samples["irules_payloads_total"])


def test_metrics_count_incidents_by_status(scenario: Scenario):
    samples = metric_samples(scenario.daemon)

    by_status = {sample.labels["status"]: sample.value for sample in samples["irules_incidents"]}
    assert by_status == dict(collections.Counter(row["status"] for row in scenario.daemon.incidents()))
    assert by_status["resolved"] >= 2


def test_metrics_measure_pipeline_latency(scenario: Scenario):
    samples = metric_samples(scenario.daemon)

    (count,) = samples["irules_pipeline_latency_seconds_count"]
    (total,) = samples["irules_pipeline_latency_seconds_sum"]
    # The histogram has one observation per alert event applied, and the scenario's payloads carry 24 alerts.
    assert count.value == sum(delivery.alerts for delivery in scenario.deliveries) == 24
    assert total.value >= 0
    (pending,) = samples["irules_alert_events_pending"]
    assert pending.value == 0


def test_openapi_is_valid_openapi_31(scenario: Scenario):
    response = scenario.daemon.client.get("/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    validate_openapi(document)


def test_openapi_documents_every_route(scenario: Scenario):
    from runtime.daemon.app import build_app
    from runtime.slack.routes import slack_routes

    documented = {
        (path, method) for path, item in scenario.daemon.client.get("/openapi.json").json()["paths"].items() for method in item
    }
    served = {
        (route.path, method.lower())
        for route in [*build_app(None).routes, *slack_routes(None)]  # type: ignore[arg-type]
        for method in getattr(route, "methods", None) or ()
        # The web view (runtime/web) serves HTML, not the JSON API that the document describes.
        if method != "HEAD" and route.path not in ("/{path:path}", "/openapi.json", "/ui", "/incidents/{incident}")
    }
    assert served - documented == set()
    assert documented - served == set()


def strict_schema(schema: Any, document: dict[str, Any]) -> Any:
    """Return `schema` with its `$ref`s resolved and no undeclared properties allowed, so an undocumented field fails."""
    if isinstance(schema, list):
        return [strict_schema(item, document) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return strict_schema(document["components"]["schemas"][name], document)
    strict = {key: strict_schema(value, document) for key, value in schema.items()}
    if "properties" in strict:
        strict.setdefault("additionalProperties", False)
    return strict


def test_status_matches_openapi_schema(scenario: Scenario):
    from jsonschema import Draft202012Validator

    document = scenario.daemon.client.get("/openapi.json").json()
    response = document["paths"]["/status"]["get"]["responses"]["200"]
    schema = strict_schema(response["content"]["application/json"]["schema"], document)
    status = scenario.daemon.status()

    errors = [f"{list(error.path)}: {error.message}" for error in Draft202012Validator(schema).iter_errors(status)]
    assert errors == []
    assert len(status["cluster"]["nodes"]) == 1


def test_undocumented_status_field_fails_schema(scenario: Scenario):
    from jsonschema import Draft202012Validator

    document = scenario.daemon.client.get("/openapi.json").json()
    response = document["paths"]["/status"]["get"]["responses"]["200"]
    schema = strict_schema(response["content"]["application/json"]["schema"], document)
    status = scenario.daemon.status()
    status["cluster"]["nodes"][0]["undocumented"] = 1

    assert not Draft202012Validator(schema).is_valid(status)


def test_health_endpoints(scenario: Scenario):
    assert scenario.daemon.client.get("/healthz").status_code == 200
    assert scenario.daemon.client.get("/readyz").text == "ready\n"
    status = scenario.daemon.status()
    assert status["ready"] is True
    assert status["rules"]["environment"] == ENVIRONMENT
    assert status["rules"]["last_error"] == []
