"""The simulation engine: page timing, escalation, resolution, people's actions and runbook paths on a virtual clock."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest

from compiler.api import compile_rules
from compiler.router import fingerprint
from runtime.alerts import Alert
from runtime.policy import Policy
from runtime.simulate import EscalationStep, Page, RunbookRun, Simulation, SimulationResult

T0 = datetime.datetime(2026, 3, 2, 10, 0, tzinfo=datetime.UTC)
MINUTE = datetime.timedelta(minutes=1)
SECOND = datetime.timedelta(seconds=1)
HOUR = datetime.timedelta(hours=1)

RULES = """
settings {
  incident_id_format "INC-{year}-{number:04d}"
  daemon_url "https://irules.example.com"
}

team payments {
  webhook "http://127.0.0.1:9/payments"
  sms "+15555550100"
  owns [checkout]
  escalation standard
}

receiver oncall {
  sms "+15555550101"
}

service checkout {
  match service = "checkout"
}

route {
  receiver payments
  group_by [alertname, service]
  group_wait 30s
  group_interval 5m
  repeat_interval 1h
}

escalation standard {
  after 5m unacknowledged page oncall
  after 10m unacknowledged escalate
  after 20m unacknowledged escalate
}
"""

LATENCY = {"alertname": "HighLatency", "service": "checkout"}
ERRORS = {"alertname": "ErrorRate", "service": "checkout"}


def make_policy(folder: Path, text: str = RULES) -> Policy:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.irules").write_text(text, encoding="utf-8")
    return Policy(compile_rules(folder))


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    return make_policy(tmp_path / "rules")


@pytest.fixture
def simulation(policy: Policy):
    with Simulation(policy, start=T0) as opened:
        yield opened


def group_pages(pages: tuple[Page, ...], channel: str = "sms") -> list[tuple[datetime.datetime, str]]:
    """Return the group messages to `payments` on one channel: every page but the escalation steps' messages."""
    return [
        (page.at, page.event)
        for page in pages
        if page.receiver == "payments" and page.channel == channel and page.event != "escalated"
    ]


def test_group_wait_then_reminders(simulation: Simulation):
    simulation.fire(LATENCY, at=T0, source="grafana")
    simulation.acknowledge(LATENCY, at=T0 + 2 * HOUR + 10 * MINUTE, by="alice")
    simulation.run_until(T0 + 3 * HOUR)
    pages = simulation.result().pages

    # Grafana's alerts reach only the daemon, so it sends both channels; reminders every
    # repeat_interval after the last message, until the acknowledgement.
    assert group_pages(pages) == [
        (T0 + 30 * SECOND, "opened"),
        (T0 + HOUR + 30 * SECOND, "reminder"),
        (T0 + 2 * HOUR + 30 * SECOND, "reminder"),
        (T0 + 2 * HOUR + 10 * MINUTE, "acknowledged"),
    ]
    assert group_pages(pages, "webhook") == group_pages(pages)
    assert {page.sender for page in pages} == {"irules"}


def test_alert_within_group_wait_joins_first_page(simulation: Simulation):
    simulation.fire(LATENCY, at=T0, source="grafana")
    simulation.fire(LATENCY | {"instance": "b"}, at=T0 + 10 * SECOND, source="grafana")
    simulation.fire(LATENCY | {"instance": "c"}, at=T0 + 2 * MINUTE, source="grafana")
    simulation.run_until(T0 + 10 * MINUTE)
    result = simulation.result()

    assert len(result.incidents) == 1
    assert result.incidents[0].events == (0, 1, 2)
    # The third alert changes the incident after the first message, so the update
    # waits for group_interval (5m) after it.
    assert group_pages(result.pages) == [(T0 + 30 * SECOND, "opened"), (T0 + 5 * MINUTE + 30 * SECOND, "updated")]


def test_escalation_reaches_level_2_without_acknowledgement(simulation: Simulation):
    simulation.fire(LATENCY, at=T0)
    simulation.run_until(T0 + HOUR)
    result = simulation.result()

    assert result.escalations == (
        EscalationStep(T0 + 5 * MINUTE, "INC-2026-0001", 0, "page", "oncall"),
        EscalationStep(T0 + 10 * MINUTE, "INC-2026-0001", 1, "escalate", None),
        EscalationStep(T0 + 20 * MINUTE, "INC-2026-0001", 2, "escalate", None),
    )
    assert result.incidents[0].escalation_level == 2
    assert [(page.at, page.receiver, page.channel) for page in result.pages if page.event == "escalated"] == [
        (T0 + 5 * MINUTE, "oncall", "sms"),
        (T0 + 10 * MINUTE, "payments", "sms"),
        (T0 + 10 * MINUTE, "payments", "webhook"),
        (T0 + 20 * MINUTE, "payments", "sms"),
        (T0 + 20 * MINUTE, "payments", "webhook"),
    ]


def test_escalation_stops_when_acknowledged(simulation: Simulation):
    simulation.fire(LATENCY, at=T0)
    simulation.acknowledge(LATENCY, at=T0 + 7 * MINUTE, by="alice")
    simulation.run_until(T0 + HOUR)
    result = simulation.result()

    assert [(step.at, step.level, step.action) for step in result.escalations] == [(T0 + 5 * MINUTE, 0, "page")]
    incident = result.incidents[0]
    assert (incident.escalation_level, incident.acknowledged_at, incident.acknowledged_by) == (0, T0 + 7 * MINUTE, "alice")
    assert incident.status == "investigating"
    assert [(action.action, action.incident, action.outcome) for action in result.actions] == [
        ("acknowledge", "INC-2026-0001", "acknowledged")
    ]


def test_resolved_alert_resolves_incident(simulation: Simulation):
    simulation.fire(LATENCY, at=T0)
    simulation.resolve(LATENCY, at=T0 + 12 * MINUTE)
    simulation.run_until(T0 + HOUR)
    result = simulation.result()

    incident = result.incidents[0]
    assert (incident.status, incident.resolved_at) == ("resolved", T0 + 12 * MINUTE)
    # Alertmanager delivers the webhook itself; the daemon sends the sms.
    assert [(page.at, page.channel, page.event, page.sender) for page in result.pages if page.receiver == "payments"] == [
        (T0 + 30 * SECOND, "sms", "opened", "irules"),
        (T0 + 30 * SECOND, "webhook", "opened", "alertmanager"),
        (T0 + 10 * MINUTE, "sms", "escalated", "irules"),
        (T0 + 10 * MINUTE, "webhook", "escalated", "irules"),
        (T0 + 12 * MINUTE, "sms", "resolved", "irules"),
        (T0 + 12 * MINUTE, "webhook", "resolved", "alertmanager"),
    ]
    # The step due at 20 minutes never fires: the resolution cancelled it.
    assert [step.at for step in result.escalations] == [T0 + 5 * MINUTE, T0 + 10 * MINUTE]


def test_person_resolving_stops_escalation(simulation: Simulation):
    simulation.fire(LATENCY, at=T0)
    simulation.resolve_incident(LATENCY, at=T0 + 3 * MINUTE, by="bob")
    simulation.acknowledge(LATENCY, at=T0 + 4 * MINUTE, by="alice")
    simulation.run_until(T0 + HOUR)
    result = simulation.result()

    assert result.escalations == ()
    assert (result.incidents[0].status, result.incidents[0].resolved_at) == ("resolved", T0 + 3 * MINUTE)
    assert [(action.action, action.by, action.outcome) for action in result.actions] == [
        ("resolve", "bob", "resolved"),
        ("acknowledge", "alice", "incident INC-2026-0001 is resolved; there is nothing to acknowledge"),
    ]


def test_action_without_incident_is_recorded(simulation: Simulation):
    simulation.acknowledge(LATENCY, at=T0, by="alice")
    result = simulation.result()

    assert [(action.incident, action.outcome) for action in result.actions] == [(None, "no incident contains these alerts")]


def test_inputs_out_of_order_give_same_result(policy: Policy):
    def run(order: list[str]) -> SimulationResult:
        with Simulation(policy, start=T0) as simulation:
            for step in order:
                if step == "fire":
                    simulation.fire(LATENCY, at=T0 + MINUTE)
                elif step == "ack":
                    simulation.acknowledge(LATENCY, at=T0 + 6 * MINUTE, by="alice")
                else:
                    simulation.resolve(LATENCY, at=T0 + 30 * MINUTE)
            simulation.run_until(T0 + HOUR)
            return simulation.result()

    in_order = run(["fire", "ack", "resolve"])
    reversed_order = run(["resolve", "ack", "fire"])
    # Events are numbered in the order given, so only their numbers differ.
    assert [incident.events for incident in in_order.incidents] == [(0,)]
    assert [incident.events for incident in reversed_order.incidents] == [(2,)]
    assert dataclasses.replace(reversed_order, incidents=()) == dataclasses.replace(in_order, incidents=())
    assert [dataclasses.replace(incident, events=()) for incident in reversed_order.incidents] == [
        dataclasses.replace(incident, events=()) for incident in in_order.incidents
    ]
    assert in_order.incidents[0].created_at == T0 + MINUTE
    assert in_order.incidents[0].resolved_at == T0 + 30 * MINUTE


def test_recorded_alert_keeps_its_fingerprint(simulation: Simulation):
    recorded = Alert(
        source="alertmanager", name="HighLatency", status="firing", labels=dict(LATENCY), fingerprint="00000000000000aa"
    )
    simulation.feed(recorded, at=T0)
    simulation.acknowledge_incidents_of(["00000000000000aa"], at=T0 + MINUTE, by="alice")
    result = simulation.result()

    assert result.incidents[0].fingerprints == ("00000000000000aa",)
    assert result.incidents[0].acknowledged_by == "alice"
    assert recorded.labels == LATENCY | {"alertname": "HighLatency"}


def test_input_before_virtual_time_is_rejected(simulation: Simulation):
    simulation.run_until(T0 + HOUR)
    with pytest.raises(ValueError, match="before the virtual time already reached"):
        simulation.fire(LATENCY, at=T0 + MINUTE)
    with pytest.raises(ValueError, match="cannot run until"):
        simulation.run_until(T0)


def test_naive_time_is_rejected(policy: Policy):
    with pytest.raises(ValueError, match="naive datetime"):
        Simulation(policy, start=datetime.datetime(2026, 3, 2, 10, 0))


def test_folder_with_store_is_rejected(policy: Policy, tmp_path: Path):
    with Simulation(policy, start=T0, directory=tmp_path):
        pass
    assert (tmp_path / "simulation.db").is_file()
    with pytest.raises(ValueError, match="exists already"):
        Simulation(policy, start=T0, directory=tmp_path)


FLAPPING_RULES = (
    RULES
    + """
dedup {
  by [alertname, service]
  window 30m
  flap_window 10m
  flap_threshold 3
}
"""
)


def test_flapping_alert_settles_after_flap_window(tmp_path: Path):
    policy = make_policy(tmp_path / "rules", FLAPPING_RULES)
    with Simulation(policy, start=T0) as simulation:
        simulation.fire(LATENCY, at=T0)
        simulation.resolve(LATENCY, at=T0 + MINUTE)
        simulation.fire(LATENCY, at=T0 + 2 * MINUTE)
        simulation.resolve(LATENCY, at=T0 + 3 * MINUTE)
        simulation.run_until(T0 + HOUR)
        result = simulation.result()

    assert len(result.incidents) == 1
    incident = result.incidents[0]
    # The firing at 2 minutes reopens the incident, within the dedup window. The third state change (at 3 minutes) starts flapping, so the resolution waits
    # until the alert has been quiet for the whole flap window.
    assert (incident.status, incident.resolved_at) == ("resolved", T0 + 13 * MINUTE)


RUNBOOK_RULES = (
    RULES
    + """
runbook latency-check "Check the latency" {
  when label.alertname == "HighLatency"
  auto
  step probe {
    run ["touch", "MARKER"]
    read_only
    on_failure report_failure
  }
  step drain {
    when label.severity == "critical"
    run ["touch", "MARKER"]
    read_only
  }
  step compare {
    when steps.probe.ok
    run ["touch", "MARKER"]
    read_only
  }
  step report_failure {
    run ["touch", "MARKER"]
    read_only
  }
}
"""
)


def test_runbook_is_planned_not_executed(tmp_path: Path):
    marker = tmp_path / "marker"
    policy = make_policy(tmp_path / "rules", RUNBOOK_RULES.replace("MARKER", str(marker)))
    with Simulation(policy, start=T0) as simulation:
        simulation.fire(LATENCY | {"severity": "warning"}, at=T0)
        simulation.fire(ERRORS, at=T0 + MINUTE)
        result = simulation.result()

    assert result.runbooks == (
        RunbookRun(T0, "INC-2026-0001", "latency-check", "started", ("probe", "compare"), ("compare",), None),
    )
    assert not marker.exists()


def test_result_is_deterministic(policy: Policy):
    def run() -> SimulationResult:
        with Simulation(policy, start=T0) as simulation:
            simulation.fire(LATENCY, at=T0)
            simulation.fire(ERRORS, at=T0)
            simulation.resolve(ERRORS, at=T0 + 8 * MINUTE)
            simulation.run_until(T0 + 2 * HOUR)
            return simulation.result()

    first = run()
    assert run() == first
    assert [incident.fingerprints for incident in first.incidents] == [(fingerprint(LATENCY),), (fingerprint(ERRORS),)]
    assert first.pages_by_receiver() == {"oncall": 2, "payments": 12}


def test_planned_path_renders_label_and_annotation_templates(repo: Path) -> None:
    # The planner was given `labels` and `annotations` without the template names `label`
    # and `annotation`, so rb-003's health URL rendered empty and its path stopped there.
    from runtime.daemon.rules import load_ruleset
    from runtime.simulate.collect import planned_path

    policy = Policy(load_ruleset(repo / "examples" / "production", "production"))
    values = {
        "labels": {"alertname": "ToolCriticalError", "namespace": "monitoring", "deployment": "prometheus", "exporter": "node"},
        "annotations": {"health_url": "http://127.0.0.1:9/healthz"},
    }
    path, undecided, detail = planned_path(policy, "rb-003", values)
    assert detail is None
    assert path == ("collect_logs", "check_api_health", "validate_config")
    assert undecided == ()
