"""The severity classifier: training, the model file, and predictions for one alert.

The model is a scikit-learn `Pipeline`: TF-IDF word and character n-grams over
the alert's text and binary label tokens (`runtime.triage.features`), then a
linear support vector machine whose scores `CalibratedClassifierCV` turns into
probabilities with sigmoid (Platt) scaling. The calibration folds keep all variants
of one alert definition together, so the probabilities reflect alerts the model
has not seen.

A model is two files: `NAME.skops`, written by `skops.io` (never pickle), and
`NAME.json` beside it with the metadata: version, SHA-256 of the model file and
of the training data, seed, metrics and library versions. `load` rejects a file
whose digest differs from the metadata, that is not a skops file, or that contains
types outside `ALLOWED_TYPES`, with a `ModelError` naming the file.

The skops file is written in a canonical form (object ids and array file names
numbered in order, fixed zip timestamps), so training twice on the same data with
the same seed gives a byte-identical file and the same SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import platform
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.triage.features import AlertText, feature_rows

log = logging.getLogger("irules.triage.classifier")

LEVELS = ("critical", "high", "medium", "low")
DEFAULT_CONFIDENCE = 0.8
DEFAULT_SEED = 20260308
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default.skops"
METADATA_FORMAT = "irules-severity-model"
METADATA_FORMAT_VERSION = 1
MAX_FOLDS = 5
MIN_DOCUMENT_SHARE = 0.004

# Types in a model file that skops does not trust by default and that our pipeline
# contains. Anything else in a file is rejected before it is loaded.
ALLOWED_TYPES = frozenset(
    {
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.model_selection._split.PredefinedSplit",
    }
)

# A fixed zip timestamp (the earliest zip can store) keeps the model file reproducible.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_SCHEMA = "schema.json"


class ModelError(Exception):
    """A model file that cannot be used: missing, not a skops file, tampered with, or of another library version."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"model file {path}: {problem}")
        self.path = path
        self.problem = problem


class TrainingError(Exception):
    """Training data that cannot train a model, such as too few examples of a level."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled alert. `group` names the alert definition or incident its variants share."""

    alert: AlertText
    level: str
    group: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.alert.name,
            "summary": self.alert.summary,
            "description": self.alert.description,
            "labels": dict(self.alert.labels),
            "level": self.level,
            "group": self.group,
        }


@dataclass(frozen=True, slots=True)
class Prediction:
    """The classifier's level for an alert, its probability, and the probability of every level."""

    level: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "confidence": round(self.confidence, 4),
            "probabilities": {level: round(value, 4) for level, value in self.probabilities.items()},
            "model_version": self.model_version,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """A prediction held against the rules' confidence threshold.

    Below the threshold `level` is None: the caller keeps the rule's or the
    sender's severity and flags the incident for review.
    """

    prediction: Prediction
    threshold: float

    @property
    def accepted(self) -> bool:
        return self.prediction.confidence >= self.threshold

    @property
    def level(self) -> str | None:
        return self.prediction.level if self.accepted else None

    @property
    def needs_review(self) -> bool:
        return not self.accepted

    def to_json(self) -> dict[str, Any]:
        """Return the verdict as the `classifier` entry of `incidents.triage`."""
        return {**self.prediction.to_json(), "threshold": self.threshold, "accepted": self.accepted}


@dataclass(slots=True)
class Classifier:
    """A loaded severity model and its metadata."""

    pipeline: Any
    metadata: dict[str, Any]
    path: Path | None = None
    levels: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.levels = tuple(str(level) for level in self.pipeline.classes_)

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unversioned"))

    def predict(self, alert: Any) -> Prediction:
        """Return the level of one alert: a `runtime.alerts.Alert`, a stored alert row or an `AlertText`."""
        return self.predict_many([alert])[0]

    def predict_many(self, alerts: Iterable[Any]) -> list[Prediction]:
        texts = [item if isinstance(item, AlertText) else AlertText.from_alert(item) for item in alerts]
        if not texts:
            return []
        matrix = self.pipeline.predict_proba(feature_rows(texts))
        return [self._prediction(row) for row in matrix]

    def classify(self, alert: Any, threshold: float | None = None) -> Verdict:
        """Predict the level of an alert and hold it against `threshold` (default 0.8, the rules' `confidence`)."""
        threshold = DEFAULT_CONFIDENCE if threshold is None else threshold
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"confidence threshold must be in (0, 1], not {threshold!r}")
        return Verdict(self.predict(alert), threshold)

    def classify_many(self, alerts: Iterable[Any], threshold: float | None = None) -> list[Verdict]:
        """Return `classify` of each alert, with one call of the model for all of them."""
        threshold = DEFAULT_CONFIDENCE if threshold is None else threshold
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"confidence threshold must be in (0, 1], not {threshold!r}")
        return [Verdict(prediction, threshold) for prediction in self.predict_many(alerts)]

    def _prediction(self, row: np.ndarray) -> Prediction:
        known = dict(zip(self.levels, (float(value) for value in row), strict=True))
        probabilities = {level: known.get(level, 0.0) for level in LEVELS}
        # Ties go to the more severe level, LEVELS being ordered from the highest.
        level = max(LEVELS, key=lambda name: (probabilities[name], -LEVELS.index(name)))
        return Prediction(level, probabilities[level], probabilities, self.version)


# ---------------------------------------------------------------- training


def build_pipeline(test_fold: Sequence[int], seed: int) -> Any:
    """Return the unfitted pipeline; `test_fold` gives each training row's calibration fold."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.model_selection import PredefinedSplit
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    # Each corpus definition appears as about four variants, so a minimum document share of
    # 0.4% (8 of 2000 rows) keeps n-grams that several definitions use. Words of one
    # definition only name its topic and do not carry over to unseen alerts.
    features = ColumnTransformer(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), min_df=MIN_DOCUMENT_SHARE, sublinear_tf=True), 0),
            (
                "characters",
                TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=MIN_DOCUMENT_SHARE, sublinear_tf=True),
                0,
            ),
            ("labels", CountVectorizer(token_pattern=r"\S+", lowercase=False, binary=True, min_df=2), 1),
        ]
    )
    model = LinearSVC(C=0.5, class_weight="balanced", random_state=seed)
    # NOTE: with `ensemble=False` the calibration data come from cross_val_predict over these
    # folds and one classifier is fitted on all rows, which keeps the file to one set of weights.
    calibrated = CalibratedClassifierCV(model, method="sigmoid", cv=PredefinedSplit(list(test_fold)), ensemble=False)
    return Pipeline([("features", features), ("classifier", calibrated)])


def calibration_folds(levels: Sequence[str], groups: Sequence[str], seed: int) -> list[int]:
    """Assign each row a calibration fold so that rows of one group share a fold and each fold has every level.

    Raises TrainingError when there are fewer than two levels, or a level has
    fewer than two groups, because calibration then has nothing to hold out.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups_per_level: dict[str, set[str]] = {}
    for level, group in zip(levels, groups, strict=True):
        groups_per_level.setdefault(level, set()).add(group)
    if len(groups_per_level) < 2:
        raise TrainingError(f"training needs examples of at least two levels; found only {', '.join(groups_per_level) or 'none'}")
    fewest_level, fewest = min(groups_per_level.items(), key=lambda item: (len(item[1]), item[0]))
    if len(fewest) < 2:
        raise TrainingError(f"training needs at least two distinct alerts of every level it sees; level {fewest_level!r} has one")
    splitter = StratifiedGroupKFold(n_splits=min(MAX_FOLDS, len(fewest)), shuffle=True, random_state=seed)
    folds = [0] * len(levels)
    for fold, (_train, test) in enumerate(splitter.split(np.zeros(len(levels)), list(levels), list(groups))):
        for index in test:
            folds[index] = fold
    return folds


def train(examples: Sequence[Example], seed: int = DEFAULT_SEED) -> Any:
    """Fit and return the pipeline for `examples`. Deterministic for the same examples, order and seed.

    Raises TrainingError for unknown levels or too few examples.
    """
    unknown = sorted({example.level for example in examples} - set(LEVELS))
    if unknown:
        raise TrainingError(f"unknown severity level {unknown[0]!r} in the training data; use one of {', '.join(LEVELS)}")
    levels = [example.level for example in examples]
    folds = calibration_folds(levels, [example.group for example in examples], seed)
    pipeline = build_pipeline(folds, seed)
    pipeline.fit(feature_rows(example.alert for example in examples), np.array(levels))
    return pipeline


def data_digest(examples: Iterable[Example]) -> str:
    """Return the SHA-256 of the training data: one canonical JSON line per example, in order."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example.to_json(), sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


# ---------------------------------------------------------------- the model file


def metadata_path(path: Path) -> Path:
    """Return the metadata file of a model: `NAME.json` beside `NAME.skops`."""
    return path.with_suffix(".json")


def model_bytes(pipeline: Any) -> bytes:
    """Return the pipeline as a canonical skops file: equal pipelines give equal bytes."""
    import skops.io

    _drop_volatile_state(pipeline)
    return canonical_skops(skops.io.dumps(pipeline))


def _drop_volatile_state(pipeline: Any) -> None:
    """Remove what prediction does not read and what differs between identical trainings.

    `stop_words_` lists every n-gram cut by min_df: it is large and, as a set, ordered
    differently in every run. `_stop_words_id` is a memory address, set again by every
    transform, so it is dropped here at saving time.
    """
    for _name, vectorizer, _column in pipeline.named_steps["features"].transformers_:
        for attribute in ("stop_words_", "_stop_words_id"):
            if hasattr(vectorizer, attribute):
                delattr(vectorizer, attribute)
        # skops writes every numpy integer as a file of its own; plain ints go into the schema.
        vectorizer.vocabulary_ = {term: int(index) for term, index in vectorizer.vocabulary_.items()}


def canonical_skops(data: bytes) -> bytes:
    """Rewrite a skops zip so that it no longer depends on memory addresses or the clock.

    skops names shared objects (`__id__`) and array files by `id()` and stamps zip
    entries with the current time. Both are renumbered in the schema's order and the
    entries get a fixed time. The renumbering is one-to-one, so the file loads the same.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        members = {name: source.read(name) for name in source.namelist()}
    schema = json.loads(members.pop(_SCHEMA))
    ids: dict[Any, int] = {}
    files: dict[str, str] = {}

    def renumber(node: Any) -> None:
        if isinstance(node, dict):
            if "__id__" in node:
                node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
            name = node.get("file")
            if isinstance(name, str) and name in members:
                node["file"] = files.setdefault(name, f"{len(files) + 1:06d}{Path(name).suffix}")
            for value in node.values():
                renumber(value)
        elif isinstance(node, list):
            for value in node:
                renumber(value)

    renumber(schema)
    if len(files) != len(members):
        raise ValueError(f"skops file has {len(members) - len(files)} entries its schema does not name")
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        entries = [(_SCHEMA, json.dumps(schema, indent=1).encode("utf-8"))]
        entries += [(new, members[old]) for old, new in files.items()]
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, content, compresslevel=9)
    return output.getvalue()


def library_versions() -> dict[str, str]:
    import scipy
    import sklearn
    import skops

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
    }


def save(
    pipeline: Any,
    path: Path,
    *,
    data_sha256: str,
    seed: int,
    examples: int,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the model file and its metadata beside it, and return the metadata.

    The version is the file's stem and the first 12 hex digits of its SHA-256, so a
    retrained model has a new version exactly when its content changed.
    """
    data = model_bytes(pipeline)
    digest = hashlib.sha256(data).hexdigest()
    metadata = {
        "format": METADATA_FORMAT,
        "format_version": METADATA_FORMAT_VERSION,
        "version": f"{path.stem}-{digest[:12]}",
        "model_sha256": digest,
        "model_bytes": len(data),
        "training_data_sha256": data_sha256,
        "training_examples": examples,
        "seed": seed,
        "levels": [str(level) for level in pipeline.classes_],
        "libraries": library_versions(),
        "metrics": dict(metrics or {}),
        **dict(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_replacing(path, data)
    _write_replacing(metadata_path(path), (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return metadata


def _write_replacing(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def load(path: Path | str | None = None) -> Classifier:
    """Load a model file (default: the shipped model) after checking its digest and the types it holds.

    Raises:
        ModelError: the file or its metadata is missing or unreadable, the file's SHA-256
            differs from the metadata, it is not a skops file, it contains types outside
            `ALLOWED_TYPES`, it was written by another scikit-learn minor version, or it is
            not a severity pipeline.
    """
    path = Path(path) if path is not None else DEFAULT_MODEL
    data = _read(path, path)
    metadata = _read_metadata(path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != metadata["model_sha256"]:
        raise ModelError(
            path,
            f"SHA-256 {digest} does not match {metadata['model_sha256']} in {metadata_path(path)}; "
            "the file changed after training, so train it again or restore it",
        )
    _check_library_version(path, metadata)
    pipeline = _load_skops(path, data)
    _check_pipeline(path, pipeline)
    return Classifier(pipeline, metadata, path)


def _read(path: Path, model: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise ModelError(model, f"{path} not found; train a model with `irules model train`") from error
    except OSError as error:
        raise ModelError(model, f"cannot read {path}: {error.strerror}") from error


def _read_metadata(path: Path) -> dict[str, Any]:
    source = metadata_path(path)
    try:
        metadata = json.loads(_read(source, path))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(path, f"metadata {source} is not valid JSON: {error}") from error
    if not isinstance(metadata, dict) or metadata.get("format") != METADATA_FORMAT:
        raise ModelError(path, f"metadata {source} is not irules model metadata (expected format {METADATA_FORMAT!r})")
    digest = metadata.get("model_sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        raise ModelError(path, f"metadata {source} has no valid `model_sha256`")
    return metadata


def _check_library_version(path: Path, metadata: Mapping[str, Any]) -> None:
    import sklearn

    trained = str(metadata.get("libraries", {}).get("scikit-learn", ""))
    if trained.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelError(
            path,
            f"trained with scikit-learn {trained or 'of an unknown version'}, but {sklearn.__version__} is installed; "
            "train it again with `irules model train` or install the version it was trained with",
        )
    if trained != sklearn.__version__:
        log.warning(
            "model %s was trained with scikit-learn %s and is loaded with %s; predictions may differ slightly",
            path,
            trained,
            sklearn.__version__,
        )


def _load_skops(path: Path, data: bytes) -> Any:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as error:
        raise ModelError(path, f"not a valid skops file ({type(error).__name__}: {error})") from error
    unexpected = sorted(set(untrusted) - ALLOWED_TYPES)
    if unexpected:
        raise ModelError(
            path, f"contains types that a severity model does not use: {', '.join(unexpected)}; the file was not loaded"
        )
    try:
        with warnings.catch_warnings():
            # A patch-level version difference is logged above; scikit-learn's own warning would repeat it.
            warnings.filterwarnings("ignore", message="Trying to unpickle estimator")
            return skops.io.loads(data, trusted=untrusted)
    except Exception as error:
        # skops raises many kinds of errors for a damaged schema; all mean the same to the caller.
        raise ModelError(path, f"not a valid skops file ({type(error).__name__}: {error})") from error


def _check_pipeline(path: Path, pipeline: Any) -> None:
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or not hasattr(pipeline, "predict_proba"):
        raise ModelError(path, f"contains a {type(pipeline).__name__}, not a severity pipeline")
    classes = [str(level) for level in getattr(pipeline, "classes_", [])]
    if not classes or set(classes) - set(LEVELS):
        raise ModelError(path, f"predicts levels {classes}, expected some of {', '.join(LEVELS)}")
