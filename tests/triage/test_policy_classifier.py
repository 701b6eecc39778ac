"""The classifier in the daemon: where the rules say `classify`, its verdict sets the severity or flags for review."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from compiler.api import check_path
from runtime.alerts import Alert
from runtime.daemon.rules import RulesState
from runtime.policy import Policy
from runtime.triage.classifier import DEFAULT_MODEL, Classifier, load, metadata_path

RULES = """
receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
}

severity {
  critical when label.severity == "page"
  else classify confidence CONFIDENCE% fallback medium MODEL
}
"""

DISK_FULL = Alert(
    source="alertmanager",
    name="NodeFilesystemAlmostOutOfSpace",
    status="firing",
    labels={"alertname": "NodeFilesystemAlmostOutOfSpace", "mountpoint": "/"},
    annotations={"summary": "Filesystem on / has less than 3% space left"},
)


def write_rules(folder: Path, confidence: int, model: str | None = None, version: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    options = (f'model "{model}" ' if model else "") + (f'version "{version}"' if version else "")
    text = RULES.replace("CONFIDENCE", str(confidence)).replace("MODEL", options)
    (folder / "rules.irules").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return load(DEFAULT_MODEL)


def test_sure_verdict_sets_the_severity(tmp_path: Path, classifier: Classifier) -> None:
    policy = Policy(check_path(write_rules(tmp_path / "rules", 1), None).ruleset(), classifier)

    assessment = policy.assess(DISK_FULL)

    assert assessment.severity_source == "classifier"
    assert assessment.severity == assessment.triage["classifier"]["level"]
    assert assessment.triage["review"] is False


def test_unsure_verdict_keeps_fallback_and_flags_review(tmp_path: Path, classifier: Classifier) -> None:
    policy = Policy(check_path(write_rules(tmp_path / "rules", 99), None).ruleset(), classifier)

    assessment = policy.assess(DISK_FULL)

    assert (assessment.severity, assessment.severity_source) == ("medium", "fallback")
    assert assessment.triage["review"] is True
    assert assessment.triage["classifier"]["accepted"] is False


def test_rules_win_over_the_classifier(tmp_path: Path, classifier: Classifier) -> None:
    policy = Policy(check_path(write_rules(tmp_path / "rules", 1), None).ruleset(), classifier)
    paged = Alert(source="alertmanager", name="X", status="firing", labels={"alertname": "X", "severity": "page"})

    assessment = policy.assess(paged)

    assert (assessment.severity, assessment.severity_source) == ("critical", "rule")
    assert assessment.triage is None


def test_daemon_loads_the_shipped_model(tmp_path: Path) -> None:
    state = RulesState(write_rules(tmp_path / "rules", 80), None)

    assert state.reload() is True
    assert state.current().classifier is not None
    assert state.status()["classifier"] == {"loaded": True, "error": None}


def test_tampered_model_leaves_the_daemon_on_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = write_rules(tmp_path / "rules", 80, "model.skops")
    shutil.copyfile(DEFAULT_MODEL, folder / "model.skops")
    shutil.copyfile(metadata_path(DEFAULT_MODEL), metadata_path(folder / "model.skops"))
    data = bytearray((folder / "model.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.skops").write_bytes(bytes(data))
    state = RulesState(folder, None)

    with caplog.at_level(logging.ERROR, logger="irules.rules"):
        assert state.reload() is True

    assert state.current().classifier is None
    status = state.status()["classifier"]
    assert status["loaded"] is False
    assert "model.skops" in status["error"]
    assert any("rejected" in record.getMessage() for record in caplog.records)
    # On rules alone, the unmatched alert gets the fallback level.
    assert state.current().assess(DISK_FULL).severity == "medium"


def test_non_skops_model_is_rejected(tmp_path: Path) -> None:
    folder = write_rules(tmp_path / "rules", 80, "model.skops")
    (folder / "model.skops").write_bytes(b"not a zip file at all")
    shutil.copyfile(metadata_path(DEFAULT_MODEL), metadata_path(folder / "model.skops"))
    state = RulesState(folder, None)

    assert state.reload() is True
    assert state.current().classifier is None
    assert state.status()["classifier"]["error"]


def test_batch_verdicts_match_single_ones(tmp_path: Path, classifier: Classifier) -> None:
    policy = Policy(check_path(write_rules(tmp_path / "rules", 1), None).ruleset(), classifier)
    alerts = [
        DISK_FULL,
        Alert(source="grafana", name="KafkaConsumerLag", status="firing", labels={"alertname": "KafkaConsumerLag"}),
        Alert(source="grafana", name="Paged", status="firing", labels={"alertname": "Paged", "severity": "page"}),
    ]
    single = [policy.assess(alert).triage for alert in alerts]

    policy.preclassify(alerts)
    batched = [policy.assess(alert).triage for alert in alerts]

    assert batched == single
    assert single[2] is None


def test_pinned_version_is_loaded(tmp_path: Path, classifier: Classifier) -> None:
    state = RulesState(write_rules(tmp_path / "rules", 80, version=classifier.version), None)

    assert state.reload() is True
    assert state.current().ruleset.severity.classify_model_version == classifier.version
    assert state.current().classifier is not None


def test_other_pinned_version_is_rejected(tmp_path: Path, classifier: Classifier) -> None:
    state = RulesState(write_rules(tmp_path / "rules", 80, version="default-000000000000"), None)

    assert state.reload() is True
    assert state.current().classifier is None
    error = state.status()["classifier"]["error"]
    assert error.endswith(f"its version is {classifier.version}, but the rules pin version default-000000000000")
