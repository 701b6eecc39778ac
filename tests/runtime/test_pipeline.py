"""The pipeline on a real store: dedup, correlation, resolution, flapping, failures, lifecycle."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from compiler.api import compile_rules
from runtime import incidents as incident_ops
from runtime.alerts import Alert
from runtime.pipeline import Accepted, Pipeline, accept
from runtime.policy import Policy
from runtime.sources.base import Inbound, Outcome
from runtime.store import Store
from runtime.store.schema import alert_events, alerts, dead_letters, incidents

T0 = datetime.datetime(2026, 3, 8, 10, 0, tzinfo=datetime.UTC)

RULES = """
settings {
  incident_id_format "INC-{year}-{number:04d}"
}

team payments {
  webhook "http://127.0.0.1:9/payments"
  owns [checkout, ledger]
}

team platform {
  webhook "http://127.0.0.1:9/platform"
}

receiver catch-all {
  webhook "http://127.0.0.1:9/all"
}

service checkout {
  depends_on [ledger]
  tier 1
  match service = "checkout"
}

service ledger {
  depends_on [database]
  match service = "ledger"
}

service database {
  team platform
  match service = "database"
}

service search {
  depends_on [database]
  team platform
  match service = "search"
}

route {
  receiver catch-all
  group_by [alertname]
  match team = "payments" -> payments
  match team = "platform" -> platform
}

severity {
  critical when label.severity == "critical"
  medium when label.severity == "warning"
  else low
}

dedup {
  by [alertname, cluster, instance]
  window 5m
  flap_window 30m
  flap_threshold 4
}

correlate security {
  when label.category == "security"
  by [alertname]
  window 30m
}

correlate by-service {
  by [cluster, service]
  window 10m
  follow_dependencies
}
"""


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.irules").write_text(RULES)
    return Policy(compile_rules(folder))


def fire(name: str, at: datetime.datetime, status: str = "firing", source_severity: str | None = None, **labels: str) -> Accepted:
    labels = {"alertname": name, **labels}
    alert = Alert(
        source="alertmanager",
        name=name,
        status=status,
        labels=labels,
        annotations={"summary": f"{name} on {labels.get('instance', '?')}"},
        source_severity=source_severity,
    )
    return Accepted("alertmanager", Inbound(b'{"test": true}', {}, at), Outcome("alertmanager", "alerts", [alert]))


def run(store: Store, policy: Policy, *items: Accepted) -> int:
    accept(store, list(items))
    return Pipeline(store, lambda: policy).process_pending()


def all_incidents(store: Store) -> list[dict]:
    with store.read() as connection:
        return [dict(row) for row in connection.execute(sa.select(incidents).order_by(incidents.c.id)).mappings()]


def outcomes(store: Store) -> list[str]:
    with store.read() as connection:
        return list(connection.execute(sa.select(alert_events.c.outcome).order_by(alert_events.c.id)).scalars())


def test_first_alert_opens_incident(store: Store, policy: Policy) -> None:
    run(
        store,
        policy,
        fire("HighLatency", T0, severity="critical", cluster="eu-1", service="checkout", instance="a", team="payments"),
    )
    (incident,) = all_incidents(store)
    assert incident["key"] == "INC-2026-0001"
    assert incident["status"] == "detected"
    assert incident["severity"] == "critical"
    assert incident["severity_source"] == "rule"
    assert incident["team"] == "payments"
    assert incident["services"] == ["checkout"]
    assert incident["receivers"] == ["payments"]
    assert incident["firing_count"] == 1
    shown = incident_ops.show(store, "INC-2026-0001")
    assert [entry["kind"] for entry in shown["timeline"]] == ["incident.detected", "alert.added", "incident.impact"]
    assert shown["timeline"][2]["message"].startswith("Impact ")
    assert shown["impact"]["alerting"] == ["checkout"]
    assert shown["timeline"][1]["actor"] == "source:alertmanager"


def test_repeat_is_folded(store: Store, policy: Policy) -> None:
    labels = {"cluster": "eu-1", "service": "checkout", "instance": "a"}
    run(store, policy, fire("HighLatency", T0, **labels), fire("HighLatency", T0 + datetime.timedelta(minutes=1), **labels))
    assert outcomes(store) == ["new", "repeat"]
    with store.read() as connection:
        (row,) = connection.execute(sa.select(alerts)).mappings().all()
    assert row["occurrences"] == 2
    assert len(all_incidents(store)) == 1


def test_dedup_by_labels_folds_extra_labels(store: Store, policy: Policy) -> None:
    base = {"cluster": "eu-1", "service": "checkout", "instance": "a"}
    run(store, policy, fire("DiskFull", T0, pod="p1", **base), fire("DiskFull", T0, pod="p2", **base))
    assert outcomes(store) == ["new", "repeat"]


def test_dedup_missing_label_keeps_alerts_apart(store: Store, policy: Policy) -> None:
    # `instance` is missing: keying by the other two labels would fold p1 and p2 into one.
    base = {"cluster": "eu-1", "service": "checkout"}
    run(store, policy, fire("DiskFull", T0, pod="p1", **base), fire("DiskFull", T0, pod="p2", **base))
    assert outcomes(store) == ["new", "new"]
    with store.read() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(alerts)).scalar_one() == 2
    (incident,) = all_incidents(store)
    assert incident["alert_count"] == 2


def test_unresolved_rules_are_logged_once_at_their_level(store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A new Policy, so that no earlier test has logged these rules already.
    (tmp_path / "rules.irules").write_text(RULES)
    fresh = Policy(compile_rules(tmp_path))
    with caplog.at_level(logging.INFO, logger="irules.policy"):
        run(store, fresh, fire("DiskFull", T0, cluster="eu-1", pod="p1"), fire("DiskFull", T0, cluster="eu-1", pod="p2"))
    logged = [
        (record.levelname, record.getMessage().split(" (fingerprint")[0])
        for record in caplog.records
        if record.name == "irules.policy"
    ]
    # A dedup rule that cannot fold repeats is worth a warning. A correlate rule that
    # does not apply hands the alert to the next one, which is routine.
    assert logged == [
        ("WARNING", "dedup rule (unnamed): labels instance missing on alert DiskFull"),
        ("INFO", "correlate rule by-service: labels service missing on alert DiskFull"),
    ]


def test_correlation_by_cluster_and_service(store: Store, policy: Policy) -> None:
    run(
        store,
        policy,
        fire("HighLatency", T0, cluster="eu-1", service="checkout", instance="a"),
        fire("ErrorRate", T0 + datetime.timedelta(minutes=2), cluster="eu-1", service="checkout", instance="a"),
        fire("ErrorRate", T0 + datetime.timedelta(minutes=3), cluster="us-1", service="checkout", instance="a"),
    )
    first, second = all_incidents(store)
    assert first["alert_count"] == 2
    assert first["correlation_rule"] == "by-service"
    assert second["alert_count"] == 1
    assert second["labels"] == {"cluster": "us-1", "service": "checkout"}


def test_correlation_window_expires(store: Store, policy: Policy) -> None:
    run(
        store,
        policy,
        fire("HighLatency", T0, cluster="eu-1", service="checkout", instance="a"),
        fire("ErrorRate", T0 + datetime.timedelta(minutes=11), cluster="eu-1", service="checkout", instance="a"),
    )
    assert [incident["alert_count"] for incident in all_incidents(store)] == [1, 1]


def test_correlation_skips_rule_with_missing_labels(store: Store, policy: Policy) -> None:
    # No `service` label: `by-service` does not apply, so each alert falls back to its
    # Alertmanager group (`group_by [alertname]` at the root) instead of one incident for all.
    run(
        store,
        policy,
        fire("DiskFull", T0, cluster="eu-1", instance="a"),
        fire("CpuHigh", T0, cluster="eu-1", instance="a"),
        fire("CpuHigh", T0, cluster="eu-1", instance="b"),
    )
    first, second = all_incidents(store)
    assert first["correlation"] == '{}:{alertname="DiskFull"}'
    assert first["correlation_rule"] is None
    assert second["correlation"] == '{}:{alertname="CpuHigh"}'
    assert second["alert_count"] == 2


def test_dependencies_join_incidents(store: Store, policy: Policy) -> None:
    run(
        store,
        policy,
        fire("HighLatency", T0, cluster="eu-1", service="checkout", instance="a"),
        # checkout depends on ledger, which depends on database: one incident.
        fire("LedgerErrors", T0 + datetime.timedelta(minutes=1), cluster="eu-1", service="ledger", instance="b"),
        fire("DatabaseDown", T0 + datetime.timedelta(minutes=2), cluster="eu-1", service="database", instance="c"),
        # search only shares the database with them: joined through the database alert,
        # which the incident already holds.
        fire("SearchSlow", T0 + datetime.timedelta(minutes=3), cluster="eu-1", service="search", instance="d"),
        # Another cluster never joins.
        fire("LedgerErrors", T0 + datetime.timedelta(minutes=4), cluster="us-1", service="ledger", instance="b"),
    )
    first, second = all_incidents(store)
    assert first["services"] == ["checkout", "ledger", "database", "search"]
    assert first["alert_count"] == 4
    assert second["services"] == ["ledger"]


def test_shared_dependency_alone_does_not_join(store: Store, policy: Policy) -> None:
    # search and checkout both rest on the database, but neither depends on the other.
    run(
        store,
        policy,
        fire("HighLatency", T0, cluster="eu-1", service="checkout", instance="a"),
        fire("SearchSlow", T0 + datetime.timedelta(minutes=1), cluster="eu-1", service="search", instance="d"),
    )
    assert len(all_incidents(store)) == 2


def test_when_selects_correlate_rule(store: Store, policy: Policy) -> None:
    run(
        store,
        policy,
        fire("Intrusion", T0, category="security", cluster="eu-1", service="checkout", instance="a"),
        fire(
            "Intrusion", T0 + datetime.timedelta(minutes=20), category="security", cluster="us-1", service="search", instance="b"
        ),
    )
    (incident,) = all_incidents(store)
    assert incident["correlation_rule"] == "security"
    assert incident["alert_count"] == 2


def test_joining_alert_raises_severity(store: Store, policy: Policy) -> None:
    run(
        store,
        policy,
        fire("ErrorRate", T0, severity="warning", cluster="eu-1", service="checkout", instance="a"),
        fire(
            "HighLatency",
            T0 + datetime.timedelta(minutes=1),
            severity="critical",
            cluster="eu-1",
            service="checkout",
            instance="a",
        ),
    )
    (incident,) = all_incidents(store)
    assert incident["severity"] == "critical"
    entries = [(entry["kind"], entry["message"]) for entry in incident_ops.show(store, incident["key"])["timeline"]]
    added = entries.index(("alert.added", "Alert HighLatency firing"))
    # The alert that raised the severity is on the timeline right before the raise it caused.
    assert entries[added + 1] == ("incident.severity", "Severity raised from medium to critical by alert HighLatency")


def test_fixed_else_beats_source_severity(store: Store, policy: Policy) -> None:
    run(store, policy, fire("Unlabelled", T0, source_severity="critical", cluster="eu-1", service="checkout", instance="a"))
    (incident,) = all_incidents(store)
    assert incident["severity"] == "low"
    assert incident["severity_source"] == "fallback"


def test_source_severity_without_else(store: Store, tmp_path: Path) -> None:
    (tmp_path / "rules.irules").write_text(RULES.replace("  else low\n", ""))
    policy = Policy(compile_rules(tmp_path))
    run(store, policy, fire("Unlabelled", T0, source_severity="error", cluster="eu-1", service="checkout", instance="a"))
    (incident,) = all_incidents(store)
    assert incident["severity"] == "high"
    assert incident["severity_source"] == "source"


def test_resolution_resolves_incident(store: Store, policy: Policy) -> None:
    labels = {"cluster": "eu-1", "service": "checkout", "instance": "a"}
    other = {"cluster": "eu-1", "service": "checkout", "instance": "b"}
    run(store, policy, fire("HighLatency", T0, **labels), fire("HighLatency", T0, **other))
    run(store, policy, fire("HighLatency", T0 + datetime.timedelta(minutes=5), status="resolved", **labels))
    (incident,) = all_incidents(store)
    assert incident["status"] == "detected"
    assert incident["firing_count"] == 1
    run(store, policy, fire("HighLatency", T0 + datetime.timedelta(minutes=6), status="resolved", **other))
    (incident,) = all_incidents(store)
    assert incident["status"] == "resolved"
    assert incident["resolved_at"] == T0 + datetime.timedelta(minutes=6)
    assert incident["firing_count"] == 0


def test_resolution_of_unknown_alert_is_recorded(store: Store, policy: Policy) -> None:
    run(store, policy, fire("NeverSeen", T0, status="resolved", cluster="eu-1", instance="a"))
    assert outcomes(store) == ["resolved-unknown"]
    assert all_incidents(store) == []


def test_refire_within_window_reopens(store: Store, policy: Policy) -> None:
    labels = {"cluster": "eu-1", "service": "checkout", "instance": "a"}
    run(store, policy, fire("HighLatency", T0, **labels))
    run(store, policy, fire("HighLatency", T0 + datetime.timedelta(minutes=1), status="resolved", **labels))
    run(store, policy, fire("HighLatency", T0 + datetime.timedelta(minutes=4), **labels))
    (incident,) = all_incidents(store)
    assert incident["status"] == "detected"
    assert incident["firing_count"] == 1
    kinds = [entry["kind"] for entry in incident_ops.show(store, incident["key"])["timeline"]]
    assert "incident.reopened" in kinds


def test_refire_after_window_opens_new_incident(store: Store, policy: Policy) -> None:
    labels = {"cluster": "eu-1", "service": "checkout", "instance": "a"}
    run(store, policy, fire("HighLatency", T0, **labels))
    run(store, policy, fire("HighLatency", T0 + datetime.timedelta(minutes=1), status="resolved", **labels))
    run(store, policy, fire("HighLatency", T0 + datetime.timedelta(minutes=20), **labels))
    first, second = all_incidents(store)
    assert first["status"] == "resolved"
    assert second["status"] == "detected"
    assert second["key"] == "INC-2026-0002"


def test_flapping_alert_is_damped(store: Store, policy: Policy) -> None:
    labels = {"cluster": "eu-1", "service": "checkout", "instance": "a"}
    events = [fire("Flappy", T0, **labels)]
    for minute in range(1, 6):
        status = "resolved" if minute % 2 else "firing"
        events.append(fire("Flappy", T0 + datetime.timedelta(minutes=minute), status=status, **labels))
    for event in events:
        run(store, policy, event)
    (incident,) = all_incidents(store)
    # Five changes within 30 minutes: flapping since the fourth; the last resolution
    # does not resolve the incident.
    assert incident["status"] == "detected"
    with store.read() as connection:
        (row,) = connection.execute(sa.select(alerts)).mappings().all()
    assert row["flapping"] is True
    timeline = incident_ops.show(store, incident["key"])["timeline"]
    assert [entry["kind"] for entry in timeline].count("alert.flapping") == 1

    later = T0 + datetime.timedelta(minutes=40)
    pipeline = Pipeline(store, lambda: policy, clock=lambda: later)
    assert pipeline.settle_flapping() == 1
    (incident,) = all_incidents(store)
    assert incident["status"] == "resolved"


def test_failing_event_becomes_dead_letter(store: Store, policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    original = policy.assess

    def assess(alert: Alert):
        if alert.name == "Poison":
            raise ValueError("cannot assess")
        return original(alert)

    monkeypatch.setattr(policy, "assess", assess)
    run(
        store,
        policy,
        fire("Poison", T0, cluster="eu-1", service="checkout", instance="a"),
        fire("Healthy", T0, cluster="eu-1", service="checkout", instance="b"),
    )
    assert outcomes(store) == ["failed", "new"]
    with store.read() as connection:
        (letter,) = connection.execute(sa.select(dead_letters)).mappings().all()
    assert letter["status"] == 500
    assert "cannot assess" in letter["reason"]
    assert letter["body"] == b'{"test": true}'
    assert len(all_incidents(store)) == 1


def test_lost_connection_is_not_blamed_on_events(store: Store, policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that closes the connection mid-batch is an outage: the batch is left for later, and
    # no event is tried alone on the dead connection or turned into a dead letter.
    lost = sa.exc.OperationalError("INSERT INTO timeline ...", {}, Exception("server closed the connection unexpectedly"))
    tried_alone: list[int] = []

    def apply_batch(connection, policy, rows):  # type: ignore[no-untyped-def]
        raise lost

    monkeypatch.setattr(Pipeline, "_apply_batch", lambda self, *arguments: apply_batch(*arguments))
    monkeypatch.setattr(Pipeline, "_apply_alone", lambda self, connection, policy, row: tried_alone.append(row.id))
    accept(store, [fire("HighLatency", T0, cluster="eu-1", service="checkout", instance="a")])
    with pytest.raises(sa.exc.OperationalError):
        Pipeline(store, lambda: policy).process_pending()
    assert tried_alone == []
    assert outcomes(store) == [None]
    with store.read() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one() == 0


def test_acknowledge_and_transitions(store: Store, policy: Policy) -> None:
    run(store, policy, fire("HighLatency", T0, cluster="eu-1", service="checkout", instance="a"))
    acked = incident_ops.acknowledge(store, "INC-2026-0001", "alice", T0 + datetime.timedelta(minutes=3))
    assert acked["status"] == "investigating"
    assert acked["acknowledged_by"] == "alice"
    incident_ops.update(
        store, "1", incident_ops.Change(status="mitigating", assignee="bob"), "alice", T0 + datetime.timedelta(minutes=4)
    )
    incident_ops.update(store, "INC-2026-0001", incident_ops.Change(status="closed"), "alice", T0 + datetime.timedelta(minutes=9))
    with pytest.raises(incident_ops.IncidentError, match="cannot go from closed to investigating"):
        incident_ops.update(store, "INC-2026-0001", incident_ops.Change(status="investigating"), "alice", T0)
    with pytest.raises(incident_ops.IncidentError, match="unknown status"):
        incident_ops.update(store, "INC-2026-0001", incident_ops.Change(status="done"), "alice", T0)
    shown = incident_ops.show(store, "INC-2026-0001")
    assert shown["status"] == "closed"
    assert shown["assignee"] == "bob"
    assert shown["resolved_at"] == "2026-03-08T10:09:00Z"
    entries = [(entry["kind"], entry["actor"]) for entry in shown["timeline"]]
    assert ("incident.acknowledged", "alice") in entries
    assert ("incident.assigned", "alice") in entries
    assert entries[-1] == ("incident.status", "alice")


def test_unknown_incident_is_404(store: Store) -> None:
    with pytest.raises(incident_ops.IncidentError) as raised:
        incident_ops.show(store, "INC-1999-0001")
    assert raised.value.status == 404


def test_numbers_restart_each_year(store: Store) -> None:
    keys = [
        incident_ops.create(
            store, "INC-{year}-{number:04d}", moment, title="t", severity=None, services=[], team=None, actor="x"
        )["key"]
        for moment in (T0, T0, T0.replace(year=2027))
    ]
    assert keys == ["INC-2026-0001", "INC-2026-0002", "INC-2027-0001"]


def test_service_filter_applies_before_the_limit(store: Store) -> None:
    def open_with(services: list[str]) -> str:
        return incident_ops.create(
            store, "INC-{year}-{number:04d}", T0, title="t", severity=None, services=services, team=None, actor="x"
        )["key"]

    # The oldest two name the service; five newer ones fill the limit without it, and
    # one names a service whose name contains it.
    matching = [open_with(["billing_api", "database"]), open_with(["billing_api"])]
    for _ in range(5):
        open_with(["checkout"])
    open_with(["billing_api2"])

    found = incident_ops.list_incidents(store, service="billing_api", limit=3)

    assert [incident["id"] for incident in found] == list(reversed(matching))


def test_store_schema_matches_migrations(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from runtime.store.schema import metadata

    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    assert store.schema_revision() == "0010"


def _grouping(store: Store) -> list[tuple[str, str, list[str]]]:
    """Return each incident's key, correlation and the instances of its alerts, in id order."""
    with store.read() as connection:
        members: dict[int, list[str]] = {}
        for incident_id, labels in connection.execute(sa.select(alerts.c.incident_id, alerts.c.labels)):
            members.setdefault(incident_id, []).append(labels["instance"])
    return [(row["key"], row["correlation"], sorted(members[row["id"]])) for row in all_incidents(store)]


def test_batch_grouping_matches_one_at_a_time(store: Store, tmp_path: Path, policy: Policy) -> None:
    # A batch reads the open incidents of all its correlation keys in one query and indexes
    # related incidents by label values. Alerts applied one at a time read them one by one.
    later = T0 + datetime.timedelta(minutes=1)
    earlier = [fire("Down", T0, cluster="eu-1", service="checkout", instance="e1")]
    batch = [
        fire("Down", later, cluster="eu-1", service="checkout", instance="b1"),  # same key as e1: joins it
        fire("Down", later, cluster="us-1", service="ledger", instance="b2"),  # opens an incident
        fire("Slow", later, cluster="us-1", service="checkout", instance="b3"),  # checkout depends on ledger: joins b2
        fire("Slow", later, cluster="ap-1", service="database", instance="b4"),  # opens an incident
        fire("Slow", later, cluster="eu-1", service="search", instance="b5"),  # unrelated to checkout: opens one
        fire("Down", later, cluster="eu-1", service="ledger", instance="b6"),  # checkout depends on ledger: joins e1
    ]
    alone = Store.open(f"sqlite:///{tmp_path / 'alone.db'}")
    groupings = []
    for target, limit in ((store, None), (alone, 1)):
        run(target, policy, *earlier)
        accept(target, batch)
        pipeline = Pipeline(target, lambda: policy)
        while pipeline.process_pending(limit=limit):
            pass
        groupings.append(_grouping(target))
    alone.close()
    assert groupings[0] == groupings[1]
    assert [instances for _key, _correlation, instances in groupings[0]] == [["b1", "b6", "e1"], ["b2", "b3"], ["b4"], ["b5"]]


def test_sqlite_flush_matches_sqlalchemy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # On SQLite, `flush` converts values itself and writes through the driver. It must store
    # the same text as SQLAlchemy's statements, which PostgreSQL uses.
    from runtime.unit_of_work import UnitOfWork

    zone = datetime.timezone(datetime.timedelta(hours=2))
    stored = []
    for name in ("driver", "sqlalchemy"):
        target = Store.open(f"sqlite:///{tmp_path / name}.db")
        if name == "sqlalchemy":
            monkeypatch.setattr(UnitOfWork, "_write_sqlite", UnitOfWork._write)
        with target.write() as connection:
            work = UnitOfWork(connection, target)
            incident = work.open_incident(
                "INC-{number:04d}",
                T0,
                title="Disk full",
                severity="high",
                severity_source="rule",
                team=None,
                services=["ledger"],
                receivers=[],
                correlation="by-service:cluster=eu-1,service=ledger",
                correlation_rule="by-service",
                labels={"cluster": "eu-1", "service": "ledger"},
                actor="source:alertmanager",
            )
            work.add_alert(
                {
                    "key": "k1",
                    "fingerprint": "f1",
                    "source": "alertmanager",
                    "name": "Disk ☃ full",
                    "status": "firing",
                    "labels": {"alertname": "Disk", "note": 'é "quoted"'},
                    # Beyond 64 bits, so `json_text` falls back to the json module.
                    "annotations": {"count": 2**70},
                    "starts_at": datetime.datetime(2026, 3, 8, 12, 0, 0, 5, tzinfo=zone),
                    "ends_at": None,
                    "first_seen": T0,
                    "last_seen": T0,
                    "resolved_at": None,
                    "occurrences": 1,
                    "severity": None,
                    "receivers": ["ops"],
                    "incident_id": incident["id"],
                    "transitions": [T0.isoformat()],
                    "flapping": True,
                }
            )
            work.add_timeline(incident["id"], T0, "alert.added", "irules", "Alert added", {"severity": None})
            work.flush()
            work.change_alert("k1", status="resolved", resolved_at=T0.astimezone(zone), flapping=False, severity="low")
            work.change_incident(incident["id"], impact=None, triage={"review": True}, escalation_started_at=T0)
            work.flush()
            tables = ("alerts", "incidents", "timeline")
            stored.append({table: connection.exec_driver_sql(f"SELECT * FROM {table}").all() for table in tables})
        target.close()
    assert stored[0]["alerts"] == stored[1]["alerts"]
    assert stored[0]["incidents"] == stored[1]["incidents"]
    assert stored[0]["timeline"] == stored[1]["timeline"]


def test_sqlite_flush_rejects_naive_time(tmp_path: Path) -> None:
    from runtime.unit_of_work import UnitOfWork

    target = Store.open(f"sqlite:///{tmp_path / 'naive.db'}")
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), target.write() as connection:
        work = UnitOfWork(connection, target)
        work.add_timeline(1, T0.replace(tzinfo=None), "alert.added", "irules", "Alert added")
        work.flush()
    target.close()
