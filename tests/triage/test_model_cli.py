"""`irules model train` and `irules model evaluate`, and the learning loop on a real store."""

from __future__ import annotations

import datetime
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from compiler.api import compile_rules
from runtime import incidents as incident_ops
from runtime.alerts import Alert
from runtime.commands.model import register
from runtime.pipeline import Accepted, Pipeline, accept
from runtime.policy import Policy
from runtime.sources.base import Inbound, Outcome
from runtime.store import Store, database_url
from runtime.triage import build_corpus, classifier
from runtime.triage.learning import examples_from_store

T0 = datetime.datetime(2026, 3, 8, 10, 0, tzinfo=datetime.UTC)
SMALL_SOURCES = ("certificates", "redis", "rabbitmq")

RULES = """
receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
  group_by [alertname, instance]
}

severity {
  critical when label.severity == "critical"
  medium when label.severity == "warning"
  else low
}
"""

PROMETHEUS_RULES = """
groups:
  - name: example
    rules:
      - alert: HostDown
        expr: up == 0
        labels: {severity: critical}
        annotations: {summary: "Host {{ $labels.instance }} is down", description: "No scrape for 5 minutes."}
      - alert: DiskAlmostFull
        expr: disk_free < 0.1
        labels: {severity: warning, team: storage}
        annotations: {summary: Disk almost full}
      - alert: ConfigReloaded
        expr: reloads > 0
        labels: {severity: info}
      - alert: PageSomeone
        expr: vector(1)
        labels: {severity: page}
"""


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()

    @application.callback()
    def _root() -> None:
        """irules (test application)."""

    register(application)
    return application


def invoke(app: typer.Typer, *arguments: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(arguments))


@pytest.fixture(scope="module")
def small_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL of three corpus files, with their train and held-out rows."""
    corpus = build_corpus.build()
    corpus.examples = [item for item in corpus.examples if item.source in SMALL_SOURCES]
    path = tmp_path_factory.mktemp("data") / "small.jsonl"
    build_corpus.write_jsonl(corpus, path)
    return path


@pytest.fixture(scope="module")
def trained(small_jsonl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    application = typer.Typer()

    @application.callback()
    def _root() -> None:
        """irules (test application)."""

    register(application)
    output = tmp_path_factory.mktemp("model") / "small.skops"
    result = invoke(application, "model", "train", "--data", str(small_jsonl), "--output", str(output), "--seed", "3")
    assert result.exit_code == 0, result.output
    return output


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.irules").write_text(RULES)
    return Policy(compile_rules(folder))


def fire(name: str, instance: str, at: datetime.datetime, severity: str, summary: str) -> Accepted:
    alert = Alert(
        source="alertmanager",
        name=name,
        status="firing",
        labels={"alertname": name, "instance": instance, "severity": severity, "env": "production"},
        annotations={"summary": summary, "description": f"{summary} on {instance}."},
    )
    return Accepted("alertmanager", Inbound(b"{}", {}, at), Outcome("alertmanager", "alerts", [alert]))


def open_incident(store: Store, policy: Policy, *alerts: Accepted) -> str:
    """Run alerts through the pipeline and return the key of the newest incident."""
    accept(store, list(alerts))
    Pipeline(store, lambda: policy).process_pending()
    with store.read() as connection:
        return connection.execute(sa.text("SELECT key FROM incidents ORDER BY id DESC LIMIT 1")).scalar_one()


def close_with_severity(store: Store, key: str, severity: str, status: str = "resolved") -> None:
    incident_ops.update(store, key, incident_ops.Change(severity=severity), "alice", T0 + datetime.timedelta(hours=1))
    incident_ops.update(store, key, incident_ops.Change(status=status), "alice", T0 + datetime.timedelta(hours=2))


def populate(store: Store, policy: Policy) -> None:
    """Open incidents through the pipeline and set their severity the way a responder does.

    Two alert names per level, so the model can hold one out for calibration.
    """
    # The sender's severity makes the rules choose another level than the person does, because
    # `irules update` records a person's severity only when it changes the level.
    cases = [
        ("DatabaseDown", "warning", "critical", "Database is down"),
        ("PaymentsFailing", "warning", "critical", "Payments fail"),
        ("QueueBacklog", "warning", "high", "Queue backlog grows"),
        ("ReplicaLagging", "warning", "high", "Replica lags behind"),
        ("CertificateExpiring", "info", "medium", "Certificate expires soon"),
        ("DiskFilling", "info", "medium", "Disk fills up"),
        ("ConfigReloaded", "warning", "low", "Configuration reloaded"),
        ("JobFinishedLate", "warning", "low", "Job finished late"),
    ]
    for round_number in range(2):
        for index, (name, source_severity, level, summary) in enumerate(cases):
            at = T0 + datetime.timedelta(minutes=10 * index + round_number)
            key = open_incident(store, policy, fire(name, f"host-{round_number}", at, source_severity, summary))
            close_with_severity(store, key, level, "resolved" if round_number == 0 else "closed")


# ---------------------------------------------------------------- train


@pytest.mark.slow
def test_train_from_jsonl_writes_model_and_metadata(trained: Path) -> None:
    metadata = json.loads(classifier.metadata_path(trained).read_text())
    assert trained.exists()
    assert metadata["seed"] == 3
    assert metadata["model_sha256"] == classifier.load(trained).metadata["model_sha256"]
    assert metadata["metrics"]["held_out"]["examples"] > 0
    assert 0.0 <= metadata["metrics"]["held_out"]["macro_f1"] <= 1.0
    assert metadata["training_data"].endswith("small.jsonl")


@pytest.mark.slow
def test_train_json_output(app: typer.Typer, small_jsonl: Path, tmp_path: Path) -> None:
    output = tmp_path / "json.skops"
    result = invoke(app, "model", "train", "--data", str(small_jsonl), "--output", str(output), "--format", "json")
    assert result.exit_code == 0, result.output
    metadata = json.loads(result.output)
    assert metadata["seed"] == classifier.DEFAULT_SEED
    assert metadata["version"].startswith("json-")


def test_train_needs_one_source(app: typer.Typer, small_jsonl: Path) -> None:
    neither = invoke(app, "model", "train")
    both = invoke(app, "model", "train", "--data", str(small_jsonl), "--from-store", "--state", "x")
    assert neither.exit_code == 2
    assert "exactly one of --data FILE or --from-store" in neither.output
    assert both.exit_code == 2


def test_train_from_store_needs_state_or_database(app: typer.Typer) -> None:
    result = invoke(app, "model", "train", "--from-store")
    assert result.exit_code == 2
    assert "--state DIR or --database URL" in result.output


def test_train_output_must_be_skops(app: typer.Typer, small_jsonl: Path, tmp_path: Path) -> None:
    result = invoke(app, "model", "train", "--data", str(small_jsonl), "--output", str(tmp_path / "model.pkl"))
    assert result.exit_code == 2
    assert "must end in .skops" in result.output


def test_train_rejects_yaml_data(app: typer.Typer, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(PROMETHEUS_RULES)
    result = invoke(app, "model", "train", "--data", str(rules), "--output", str(tmp_path / "m.skops"))
    assert result.exit_code == 1
    assert "training reads JSONL" in result.output


def test_train_rejects_invalid_level(app: typer.Typer, tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"name": "X", "level": "urgent"}) + "\n")
    result = invoke(app, "model", "train", "--data", str(data), "--output", str(tmp_path / "m.skops"))
    assert result.exit_code == 1
    assert "bad.jsonl:1: `level` must be one of" in result.output


def test_train_missing_data_file(app: typer.Typer, tmp_path: Path) -> None:
    result = invoke(app, "model", "train", "--data", str(tmp_path / "absent.jsonl"))
    assert result.exit_code == 2
    assert "path not found" in result.output


# ---------------------------------------------------------------- evaluate


@pytest.mark.slow
def test_evaluate_text_and_picture(app: typer.Typer, trained: Path, small_jsonl: Path, tmp_path: Path) -> None:
    picture = tmp_path / "confusion.svg"
    result = invoke(app, "model", "evaluate", "--model", str(trained), "--data", str(small_jsonl), "--picture", str(picture))
    assert result.exit_code == 0, result.output
    assert "macro F1" in result.output
    assert "confusion matrix" in result.output
    assert "skipped:" in result.output
    root = ElementTree.fromstring(picture.read_text())
    cells = [element for element in root.iter("{http://www.w3.org/2000/svg}rect") if element.get("width") == "72"]
    assert len(cells) == 16


@pytest.mark.slow
def test_evaluate_json_counts_held_out_rows_only(app: typer.Typer, trained: Path, small_jsonl: Path) -> None:
    result = invoke(app, "model", "evaluate", "--model", str(trained), "--data", str(small_jsonl), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    held_out = sum(1 for line in small_jsonl.read_text().splitlines() if json.loads(line)["split"] == "held-out")
    assert report["examples"] == held_out
    assert report["scale"] == "irules"
    assert sum(sum(row) for row in report["confusion"]) == held_out
    assert set(report["per_level"]) == set(classifier.LEVELS)
    assert report["attribution"] is None


def test_evaluate_prometheus_rule_file(app: typer.Typer, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(PROMETHEUS_RULES)
    result = invoke(app, "model", "evaluate", "--data", str(rules), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["scale"] == "prometheus"
    assert report["levels"] == ["critical", "warning", "info"]
    assert report["examples"] == 3
    assert report["skipped"] == {"severity 'page'": 1}


def test_evaluate_collection_layout_is_attributed(app: typer.Typer, tmp_path: Path) -> None:
    collection = tmp_path / "collection.yml"
    collection.write_text(
        "groups:\n- name: Databases\n  services:\n  - name: Example\n    exporters:\n    - rules:\n"
        "      - {name: Example database down, description: The database is down, severity: critical}\n"
    )
    result = invoke(app, "model", "evaluate", "--data", str(collection))
    assert result.exit_code == 0, result.output
    assert "samber/awesome-prometheus-alerts, licensed CC BY 4.0" in result.output


@pytest.mark.slow
def test_evaluate_tampered_model_fails(app: typer.Typer, trained: Path, small_jsonl: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.skops"
    tampered.write_bytes(trained.read_bytes() + b"\0")
    classifier.metadata_path(tampered).write_bytes(classifier.metadata_path(trained).read_bytes())
    result = invoke(app, "model", "evaluate", "--model", str(tampered), "--data", str(small_jsonl))
    assert result.exit_code == 1
    assert f"model file {tampered}" in result.output
    assert "does not match" in result.output


def test_evaluate_picture_must_be_svg(app: typer.Typer, small_jsonl: Path, tmp_path: Path) -> None:
    result = invoke(app, "model", "evaluate", "--data", str(small_jsonl), "--picture", str(tmp_path / "c.png"))
    assert result.exit_code == 2
    assert "must end in .svg" in result.output


def test_evaluate_data_without_examples(app: typer.Typer, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text("groups: []\n")
    result = invoke(app, "model", "evaluate", "--data", str(rules))
    assert result.exit_code == 1
    assert "contains no usable labelled alert" in result.output


# ---------------------------------------------------------------- the learning loop


@pytest.mark.slow
def test_examples_from_store_take_person_severity(store: Store, policy: Policy) -> None:
    populate(store, policy)
    # Left out: an open incident, an incident whose severity came from the rules, one opened by hand.
    open_incident(store, policy, fire("StillOpen", "host-9", T0, "warning", "Still open"))
    closed_by_rule = open_incident(store, policy, fire("RuleOnly", "host-9", T0, "critical", "Rule severity"))
    incident_ops.update(store, closed_by_rule, incident_ops.Change(status="resolved"), "bob", T0 + datetime.timedelta(hours=1))
    by_hand = incident_ops.create(store, "INC-{number}", T0, title="Manual", severity="high", services=[], team=None, actor="bob")
    incident_ops.update(store, by_hand["key"], incident_ops.Change(status="resolved"), "bob", T0 + datetime.timedelta(hours=1))

    found = examples_from_store(store)
    names = sorted({example.alert.name for example in found.examples})
    assert len(found.examples) == 16
    assert found.incidents == 17
    assert found.without_alerts == 1
    assert "StillOpen" not in names
    assert "RuleOnly" not in names
    database_down = next(example for example in found.examples if example.alert.name == "DatabaseDown")
    assert database_down.level == "critical"
    assert database_down.alert.summary == "Database is down"
    assert database_down.group == "store/DatabaseDown"
    assert "severity" in database_down.alert.labels


@pytest.mark.slow
def test_examples_from_store_pick_most_severe_alert(tmp_path: Path, policy: Policy) -> None:
    store = Store.open(database_url(tmp_path / "state"))
    try:
        with_two = Policy(policy.ruleset)
        accept(store, [fire("MinorWarning", "h1", T0, "info", "Minor"), fire("MajorOutage", "h1", T0, "critical", "Major")])
        Pipeline(store, lambda: with_two).process_pending()
        with store.write() as connection:
            # Put both alerts into one incident, as correlation would.
            first = connection.execute(sa.text("SELECT min(id) FROM incidents")).scalar_one()
            connection.execute(sa.text("UPDATE alerts SET incident_id = :id"), {"id": first})
            key = connection.execute(sa.text("SELECT key FROM incidents WHERE id = :id"), {"id": first}).scalar_one()
        close_with_severity(store, key, "high")
        (example,) = [item for item in examples_from_store(store).examples if item.level == "high"]
    finally:
        store.close()
    assert example.alert.name == "MajorOutage"


@pytest.mark.slow
def test_train_from_store_without_corpus(app: typer.Typer, store: Store, store_url: str, policy: Policy, tmp_path: Path) -> None:
    populate(store, policy)
    output = tmp_path / "learned.skops"
    result = invoke(app, "model", "train", "--from-store", "--database", store_url, "--no-corpus", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "trained on 16 examples (16 incidents from the store)" in result.output
    learned = classifier.load(output)
    assert learned.metadata["training_examples"] == 16
    assert learned.metadata["metrics"] == {}
    assert set(learned.levels) == set(classifier.LEVELS)
    assert learned.metadata["training_data_sha256"] == classifier.data_digest(examples_from_store(store).examples)


@pytest.mark.slow
def test_train_from_store_with_corpus(app: typer.Typer, tmp_path: Path, policy: Policy) -> None:
    state = tmp_path / "state"
    store = Store.open(database_url(state))
    try:
        populate(store, policy)
    finally:
        store.close()
    output = tmp_path / "learned.skops"
    result = invoke(app, "model", "train", "--from-store", "--state", str(state), "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "16 incidents from the store and the shipped corpus" in result.output
    metadata = classifier.load(output).metadata
    assert metadata["training_examples"] == 16 + len(build_corpus.build().split("train"))
    assert "held_out" in metadata["metrics"]


def test_train_from_empty_store_fails(app: typer.Typer, tmp_path: Path) -> None:
    result = invoke(
        app, "model", "train", "--from-store", "--state", str(tmp_path / "state"), "--output", str(tmp_path / "m.skops")
    )
    assert result.exit_code == 1
    assert "no resolved or closed incident" in result.output
