"""The severity classifier: features, training, the model file's checks, and the confidence threshold."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.alerts import Alert
from runtime.triage import build_corpus, classifier
from runtime.triage.classifier import Classifier, Example, ModelError, Prediction, TrainingError, Verdict
from runtime.triage.features import MAX_FIELD_CHARS, AlertText, alert_text, feature_rows, label_tokens, split_identifier

REPO = Path(__file__).resolve().parents[2]
# Corpus files small enough to train on in about a second, with every level in them.
SMALL_SOURCES = ("certificates", "redis", "rabbitmq")

# Trains the same examples as `small_examples` in a fresh interpreter and prints the model's SHA-256.
CHILD_TRAINING = """
import hashlib, sys
from runtime.triage import build_corpus, classifier
corpus = build_corpus.build()
examples = [item.example for item in corpus.examples if item.source in {sources!r} and item.split == "train"]
print(hashlib.sha256(classifier.model_bytes(classifier.train(examples, 7))).hexdigest())
"""


@pytest.fixture(scope="module")
def small_examples() -> list[Example]:
    corpus = build_corpus.build()
    return [item.example for item in corpus.examples if item.source in SMALL_SOURCES and item.split == "train"]


@pytest.fixture(scope="module")
def small_model(small_examples: list[Example], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "small.skops"
    pipeline = classifier.train(small_examples, 7)
    classifier.save(pipeline, path, data_sha256=classifier.data_digest(small_examples), seed=7, examples=len(small_examples))
    return path


def copy_model(source: Path, folder: Path) -> Path:
    target = folder / source.name
    target.write_bytes(source.read_bytes())
    classifier.metadata_path(target).write_bytes(classifier.metadata_path(source).read_bytes())
    return target


def write_with_metadata(path: Path, data: bytes) -> None:
    """Write `data` as a model file with metadata whose digest matches it, as an attacker could."""
    path.write_bytes(data)
    metadata = {
        "format": classifier.METADATA_FORMAT,
        "model_sha256": hashlib.sha256(data).hexdigest(),
        "libraries": classifier.library_versions(),
        "version": "forged",
    }
    classifier.metadata_path(path).write_text(json.dumps(metadata))


# ---------------------------------------------------------------- features


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("KubePodCrashLooping", "kube pod crash looping"),
        ("HTTPErrorRate", "http error rate"),
        ("node_filesystem_almost_full", "node filesystem almost full"),
        ("rds-free-storage-low", "rds free storage low"),
        ("P99LatencyHigh", "p99 latency high"),
        ("Prometheus target missing", "prometheus target missing"),
        ("", ""),
    ],
)
def test_split_identifier_words(name: str, words: str) -> None:
    assert split_identifier(name) == words


def test_label_tokens_leave_out_sender_severity() -> None:
    tokens = label_tokens({"severity": "critical", "priority": "P1", "alertname": "X", "env": "production"}).split()
    assert tokens == ["env", "env=production"]


def test_label_tokens_keep_only_key_of_identities() -> None:
    tokens = label_tokens({"instance": "10.0.3.4:9100", "pod": "api-6d8f9c7b5-x2kqp", "tier": "1", "region": "eu-west-1"})
    assert "instance" in tokens.split()
    assert not any(token.startswith("instance=") for token in tokens.split())
    assert not any(token.startswith("pod=") for token in tokens.split())
    assert "tier=1" in tokens.split()
    assert "region=eu-west-1" in tokens.split()


def test_label_tokens_have_no_whitespace() -> None:
    tokens = label_tokens({"team name": "site reliability"}).split(" ")
    assert tokens == ["team_name", "team_name=site_reliability"]


def test_alert_text_cuts_hostile_fields() -> None:
    hostile = AlertText(name="A" * 50_000, summary="$(rm -rf /) {{ 7*7 }} " * 10_000, description="x" * 1_000_000)
    text = alert_text(hostile)
    assert len(text) <= 3 * MAX_FIELD_CHARS + 10
    assert "{{ 7*7 }}" in text


def test_alert_text_from_pipeline_alert() -> None:
    alert = Alert(
        source="alertmanager",
        name="DiskFull",
        status="firing",
        labels={"instance": "db-1", "severity": "warning"},
        annotations={"summary": "Disk of db-1 is full", "message": "Writes fail"},
    )
    text = AlertText.from_alert(alert)
    assert text.name == "DiskFull"
    assert text.summary == "Disk of db-1 is full"
    assert text.description == "Writes fail"
    assert text.labels["alertname"] == "DiskFull"


def test_feature_rows_shape() -> None:
    rows = feature_rows([AlertText("HostDown", "down", "", {"env": "prod"}), AlertText("Other")])
    assert rows.shape == (2, 2)
    assert rows[0, 1] == "env env=prod"
    assert rows[1, 0] == "other"


# ---------------------------------------------------------------- training and the digest


@pytest.mark.slow
def test_training_twice_gives_identical_file(small_examples: list[Example]) -> None:
    first = classifier.model_bytes(classifier.train(small_examples, 7))
    second = classifier.model_bytes(classifier.train(small_examples, 7))
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    assert first == second


@pytest.mark.slow
def test_training_in_child_process_gives_same_digest(small_examples: list[Example]) -> None:
    # Another interpreter with another string hash seed: object ids and set orders differ.
    expected = hashlib.sha256(classifier.model_bytes(classifier.train(small_examples, 7))).hexdigest()
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD_TRAINING.format(sources=set(SMALL_SOURCES))],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == expected


@pytest.mark.slow
def test_predicting_before_saving_keeps_file(small_examples: list[Example]) -> None:
    # A transform stores the address of the stop word list on each vectorizer.
    untouched = classifier.model_bytes(classifier.train(small_examples, 7))
    used = classifier.train(small_examples, 7)
    used.predict_proba(feature_rows(example.alert for example in small_examples[:5]))
    assert classifier.model_bytes(used) == untouched


@pytest.mark.slow
def test_other_seed_gives_other_digest(small_examples: list[Example]) -> None:
    first = classifier.model_bytes(classifier.train(small_examples, 7))
    second = classifier.model_bytes(classifier.train(small_examples, 8))
    assert hashlib.sha256(first).hexdigest() != hashlib.sha256(second).hexdigest()


def test_data_digest_depends_on_levels(small_examples: list[Example]) -> None:
    changed = [Example(small_examples[0].alert, "low" if small_examples[0].level != "low" else "high", "g"), *small_examples[1:]]
    assert classifier.data_digest(small_examples) != classifier.data_digest(changed)
    assert classifier.data_digest(small_examples) == classifier.data_digest(list(small_examples))


def test_training_needs_two_levels() -> None:
    examples = [Example(AlertText(f"Alert{index}"), "high", f"g{index}") for index in range(6)]
    with pytest.raises(TrainingError, match="at least two levels"):
        classifier.train(examples)


def test_training_needs_two_alerts_per_level() -> None:
    examples = [Example(AlertText(f"Alert{index}"), "high", f"g{index}") for index in range(6)]
    examples += [Example(AlertText("Lonely"), "low", "only-one")] * 3
    with pytest.raises(TrainingError, match="level 'low' has one"):
        classifier.train(examples)


def test_training_rejects_unknown_level() -> None:
    examples = [Example(AlertText("A"), "urgent", "a"), Example(AlertText("B"), "low", "b")]
    with pytest.raises(TrainingError, match="unknown severity level 'urgent'"):
        classifier.train(examples)


# ---------------------------------------------------------------- the model file


@pytest.mark.slow
def test_saved_model_loads_and_predicts(small_model: Path) -> None:
    loaded = classifier.load(small_model)
    metadata = json.loads(classifier.metadata_path(small_model).read_text())
    assert loaded.version == metadata["version"]
    assert metadata["version"] == f"small-{metadata['model_sha256'][:12]}"
    assert metadata["seed"] == 7
    assert metadata["libraries"]["scikit-learn"] == classifier.library_versions()["scikit-learn"]
    prediction = loaded.predict(AlertText("RedisDown", "Redis cache-1 is down", "The server does not answer."))
    assert prediction.level in classifier.LEVELS
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
    assert prediction.confidence == max(prediction.probabilities.values())
    assert prediction.model_version == loaded.version


@pytest.mark.slow
def test_tampered_model_is_rejected(small_model: Path, tmp_path: Path) -> None:
    path = copy_model(small_model, tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as caught:
        classifier.load(path)
    assert str(path) in str(caught.value)
    assert "does not match" in caught.value.problem


def test_non_skops_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    write_with_metadata(path, b"this is not a zip file\n")
    with pytest.raises(ModelError) as caught:
        classifier.load(path)
    assert str(path) in str(caught.value)
    assert "not a valid skops file" in caught.value.problem


def test_zip_without_schema_is_rejected(tmp_path: Path) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("other.txt", "hello")
    path = tmp_path / "model.skops"
    write_with_metadata(path, buffer.getvalue())
    with pytest.raises(ModelError, match="not a valid skops file"):
        classifier.load(path)


def test_unexpected_type_is_rejected(tmp_path: Path) -> None:
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    # A model that would call os.system when used: skops names the function, and the allowlist lacks it.
    path = tmp_path / "model.skops"
    write_with_metadata(path, skops.io.dumps(FunctionTransformer(func=os.system)))
    with pytest.raises(ModelError) as caught:
        classifier.load(path)
    assert "system" in caught.value.problem
    assert "the file was not loaded" in caught.value.problem


def test_missing_metadata_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(b"PK")
    with pytest.raises(ModelError) as caught:
        classifier.load(path)
    assert "model.json not found" in caught.value.problem


def test_missing_model_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found; train a model"):
        classifier.load(tmp_path / "absent.skops")


def test_invalid_metadata_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(b"PK")
    classifier.metadata_path(path).write_text("{not json")
    with pytest.raises(ModelError, match="is not valid JSON"):
        classifier.load(path)


def test_foreign_metadata_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(b"PK")
    classifier.metadata_path(path).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match="not irules model metadata"):
        classifier.load(path)


@pytest.mark.slow
def test_other_scikit_learn_minor_is_rejected(small_model: Path, tmp_path: Path) -> None:
    path = copy_model(small_model, tmp_path)
    metadata_file = classifier.metadata_path(path)
    metadata = json.loads(metadata_file.read_text())
    metadata["libraries"]["scikit-learn"] = "0.1.0"
    metadata_file.write_text(json.dumps(metadata))
    with pytest.raises(ModelError) as caught:
        classifier.load(path)
    assert "trained with scikit-learn 0.1.0" in caught.value.problem


def test_shipped_model_loads() -> None:
    loaded = classifier.load()
    assert loaded.path == classifier.DEFAULT_MODEL
    assert set(loaded.levels) == set(classifier.LEVELS)


# ---------------------------------------------------------------- the confidence threshold


def prediction(confidence: float) -> Prediction:
    rest = (1.0 - confidence) / 3
    return Prediction("high", confidence, {"critical": rest, "high": confidence, "medium": rest, "low": rest}, "test-1")


def test_verdict_below_threshold_needs_review() -> None:
    verdict = Verdict(prediction(0.79), 0.8)
    assert verdict.accepted is False
    assert verdict.level is None
    assert verdict.needs_review is True


def test_verdict_at_threshold_is_accepted() -> None:
    verdict = Verdict(prediction(0.8), 0.8)
    assert verdict.accepted is True
    assert verdict.level == "high"
    assert verdict.needs_review is False


def test_verdict_json_for_incident_triage() -> None:
    stored = Verdict(prediction(0.5), 0.8).to_json()
    assert stored["level"] == "high"
    assert stored["accepted"] is False
    assert stored["threshold"] == 0.8
    assert stored["model_version"] == "test-1"
    assert set(stored["probabilities"]) == set(classifier.LEVELS)


def test_classify_applies_threshold() -> None:
    loaded = classifier.load()
    alert = AlertText("PostgresqlDown", "PostgreSQL pg-1 is down", "The database does not accept connections.")
    confidence = loaded.predict(alert).confidence
    assert loaded.classify(alert, threshold=confidence).accepted is True
    assert loaded.classify(alert, threshold=min(1.0, confidence + 0.01)).level is None
    assert loaded.classify(alert).threshold == classifier.DEFAULT_CONFIDENCE


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.5])
def test_classify_rejects_threshold_out_of_range(threshold: float) -> None:
    loaded = classifier.load()
    with pytest.raises(ValueError, match="confidence threshold must be in"):
        loaded.classify(AlertText("X"), threshold=threshold)


def test_prediction_ties_go_to_higher_level() -> None:
    class Even:
        classes_ = ("critical", "high", "low", "medium")

        def predict_proba(self, rows: object) -> list[list[float]]:
            return [[0.25, 0.25, 0.25, 0.25]]

    verdict = Classifier(Even(), {"version": "even"}).predict(AlertText("X"))
    assert verdict.level == "critical"


def test_predict_many_empty() -> None:
    assert classifier.load().predict_many([]) == []
