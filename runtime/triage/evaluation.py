"""Evaluation of a severity model: labelled data sets, figures, and the confusion matrix as text and SVG.

Three layouts of labelled data are read:

- JSONL, one example a line, as `python -m runtime.triage.build_corpus` writes it
  (`name`, `summary`, `description`, `labels`, `level`, optional `group` and
  `split`). Rows whose `split` is `train` are left out of an evaluation.
- Prometheus rule files (`groups[].rules[]` with `alert`, `labels.severity` and
  `annotations`).
- The rule collection of samber/awesome-prometheus-alerts
  (`groups[].services[].exporters[].rules[]` with `name`, `description` and `severity`).

Prometheus rules grade alerts as critical, warning and info, not with the four
levels of irules. On that scale a prediction counts as `critical` when it is
critical, as `warning` when it is high or medium, and as `info` when it is low.
`critical_or_high_recall` also reports how many critical rules the model put at
high or above.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from runtime.triage.classifier import DEFAULT_CONFIDENCE, LEVELS, Classifier, Example
from runtime.triage.features import AlertText

PROMETHEUS_LEVELS = ("critical", "warning", "info")
TO_PROMETHEUS = {"critical": "critical", "high": "warning", "medium": "warning", "low": "info"}
COLLECTION_ATTRIBUTION = "alert rules from samber/awesome-prometheus-alerts, licensed CC BY 4.0"
HELD_OUT = "held-out"
# Confidence thresholds whose coverage a report lists, to help choose the rules' `confidence P%`.
COVERAGE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
TRAIN = "train"


class DataError(Exception):
    """A labelled data file that cannot be read; the message names the file and the place."""


@dataclass(slots=True)
class LabelledSet:
    """Examples with true levels, on the `irules` or the `prometheus` scale."""

    examples: list[Example]
    scale: str
    source: str
    attribution: str | None = None
    # Rows left out and why, such as `severity 'page'` or `split 'train'`, with their counts.
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def levels(self) -> tuple[str, ...]:
        return LEVELS if self.scale == "irules" else PROMETHEUS_LEVELS


# ---------------------------------------------------------------- reading data


def load_labelled(path: Path, *, include_train: bool = False) -> LabelledSet:
    """Read a JSONL file, a Prometheus rule file or the awesome-prometheus-alerts collection.

    Raises DataError when the file cannot be read or has no usable example.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from error
    if path.suffix in (".yml", ".yaml"):
        labelled = _from_yaml(path, text)
    else:
        labelled = _from_jsonl(path, text, include_train)
    if not labelled.examples:
        skipped = ", ".join(f"{count} with {reason}" for reason, count in sorted(labelled.skipped.items()))
        raise DataError(f"{path} contains no usable labelled alert" + (f" (skipped: {skipped})" if skipped else ""))
    return labelled


def _from_jsonl(path: Path, text: str, include_train: bool) -> LabelledSet:
    labelled = LabelledSet([], "irules", str(path))
    for example, split in parse_jsonl(path, text):
        if split == TRAIN and not include_train:
            _count(labelled.skipped, "split 'train'")
            continue
        labelled.examples.append(example)
    return labelled


def read_jsonl(path: Path) -> list[tuple[Example, str | None]]:
    """Return every example of a JSONL file with its `split` (None when the row has none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from error
    return parse_jsonl(path, text)


def parse_jsonl(path: Path, text: str) -> list[tuple[Example, str | None]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: invalid JSON: {error.msg}") from error
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, not {type(row).__name__}")
        split = row.get("split")
        rows.append((example_from_json(row, f"{path}:{number}"), split if isinstance(split, str) else None))
    return rows


def example_from_json(row: Mapping[str, Any], where: str) -> Example:
    """Build an example from one JSONL row; DataError names `where` when a field is missing or wrong."""
    level = row.get("level")
    if level not in LEVELS:
        raise DataError(f"{where}: `level` must be one of {', '.join(LEVELS)}, not {level!r}")
    name = row.get("name")
    if not isinstance(name, str) or not name:
        raise DataError(f"{where}: `name` is missing")
    labels = row.get("labels") or {}
    if not isinstance(labels, dict):
        raise DataError(f"{where}: `labels` must be an object")
    alert = AlertText(
        name=name,
        summary=str(row.get("summary") or ""),
        description=str(row.get("description") or ""),
        labels={str(key): str(value) for key, value in labels.items()},
    )
    return Example(alert, level, str(row.get("group") or name))


def _from_yaml(path: Path, text: str) -> LabelledSet:
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DataError(f"{path}: invalid YAML: {error}") from error
    groups = document.get("groups") if isinstance(document, dict) else None
    if not isinstance(groups, list):
        raise DataError(f"{path}: expected a Prometheus rule file or the awesome-prometheus-alerts collection (a `groups` list)")
    if any(isinstance(group, dict) and "services" in group for group in groups):
        return _from_collection(path, groups)
    return _from_prometheus_rules(path, groups)


def _from_prometheus_rules(path: Path, groups: list[Any]) -> LabelledSet:
    labelled = LabelledSet([], "prometheus", str(path))
    for group in groups:
        for rule in _list(group, "rules"):
            if not isinstance(rule, dict) or not isinstance(rule.get("alert"), str):
                continue
            labels = {str(key): str(value) for key, value in (rule.get("labels") or {}).items()}
            annotations = rule.get("annotations") or {}
            severity = labels.get("severity", "").lower()
            if severity not in PROMETHEUS_LEVELS:
                _count(labelled.skipped, f"severity {severity!r}")
                continue
            alert = AlertText(
                name=rule["alert"],
                summary=str(annotations.get("summary") or ""),
                description=str(annotations.get("description") or annotations.get("message") or ""),
                labels=labels,
            )
            labelled.examples.append(Example(alert, severity, rule["alert"]))
    return labelled


def _from_collection(path: Path, groups: list[Any]) -> LabelledSet:
    """Read the awesome-prometheus-alerts layout. Its rules have no labels, and the alert name is the title in CamelCase."""
    labelled = LabelledSet([], "prometheus", str(path), attribution=COLLECTION_ATTRIBUTION)
    for group in groups:
        for service in _list(group, "services"):
            for exporter in _list(service, "exporters"):
                for rule in _list(exporter, "rules"):
                    if not isinstance(rule, dict) or not isinstance(rule.get("name"), str):
                        continue
                    severity = str(rule.get("severity", "")).lower()
                    if severity not in PROMETHEUS_LEVELS:
                        _count(labelled.skipped, f"severity {severity!r}")
                        continue
                    title = rule["name"]
                    alert = AlertText(
                        name="".join(word[:1].upper() + word[1:] for word in title.split()),
                        summary=title,
                        description=str(rule.get("description") or ""),
                    )
                    labelled.examples.append(Example(alert, severity, title))
    return labelled


def _list(node: Any, key: str) -> list[Any]:
    value = node.get(key) if isinstance(node, dict) else None
    return value if isinstance(value, list) else []


def _count(counts: dict[str, int], reason: str) -> None:
    counts[reason] = counts.get(reason, 0) + 1


# ---------------------------------------------------------------- figures


@dataclass(slots=True)
class Report:
    """Figures of one model on one labelled set.

    `confusion[i][j]` counts examples of true level `levels[i]` predicted as
    `levels[j]`. `confident_share` is the share of predictions at or above
    `threshold`, and `confident_accuracy` the accuracy among those (0 when none
    reaches it). `coverage` lists both for each of `COVERAGE_THRESHOLDS`.
    """

    source: str
    scale: str
    levels: tuple[str, ...]
    examples: int
    model_version: str
    threshold: float
    precision: dict[str, float]
    recall: dict[str, float]
    f1: dict[str, float]
    support: dict[str, int]
    macro_f1: float
    accuracy: float
    critical_recall: float
    critical_or_high_recall: float
    confident_share: float
    confident_accuracy: float
    confusion: list[list[int]]
    coverage: dict[float, tuple[float, float]] = field(default_factory=dict)
    attribution: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "scale": self.scale,
            "levels": list(self.levels),
            "examples": self.examples,
            "model_version": self.model_version,
            "threshold": self.threshold,
            "per_level": {
                level: {
                    "precision": _round(self.precision[level]),
                    "recall": _round(self.recall[level]),
                    "f1": _round(self.f1[level]),
                    "support": self.support[level],
                }
                for level in self.levels
            },
            "macro_f1": _round(self.macro_f1),
            "accuracy": _round(self.accuracy),
            "critical_recall": _round(self.critical_recall),
            "critical_or_high_recall": _round(self.critical_or_high_recall),
            "confident_share": _round(self.confident_share),
            "confident_accuracy": _round(self.confident_accuracy),
            "confusion": self.confusion,
            "coverage": [
                {"threshold": threshold, "share": _round(share), "accuracy": _round(accuracy)}
                for threshold, (share, accuracy) in self.coverage.items()
            ],
            "attribution": self.attribution,
            "skipped": self.skipped,
        }

    def summary(self) -> dict[str, float]:
        """Return the headline figures that model metadata and baselines record."""
        return {
            "examples": self.examples,
            "macro_f1": _round(self.macro_f1),
            "accuracy": _round(self.accuracy),
            "critical_recall": _round(self.critical_recall),
            "critical_or_high_recall": _round(self.critical_or_high_recall),
        }


def evaluate(classifier: Classifier, labelled: LabelledSet, threshold: float = DEFAULT_CONFIDENCE) -> Report:
    """Predict every example of `labelled` and compute the figures on its scale."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predictions = classifier.predict_many(example.alert for example in labelled.examples)
    truth = [example.level for example in labelled.examples]
    predicted = [_on_scale(prediction.level, labelled.scale) for prediction in predictions]
    levels = labelled.levels
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=list(levels), average=None, zero_division=0.0
    )
    present = [index for index, level in enumerate(levels) if level in truth]
    right = [true == guess for true, guess in zip(truth, predicted, strict=True)]
    coverage = {}
    for cut in sorted({*COVERAGE_THRESHOLDS, threshold}):
        confident = [index for index, prediction in enumerate(predictions) if prediction.confidence >= cut]
        coverage[cut] = (len(confident) / len(truth), _share(confident, lambda index: right[index]))
    critical = [index for index, level in enumerate(truth) if level == "critical"]
    return Report(
        source=labelled.source,
        scale=labelled.scale,
        levels=levels,
        examples=len(truth),
        model_version=classifier.version,
        threshold=threshold,
        precision=dict(zip(levels, map(float, precision), strict=True)),
        recall=dict(zip(levels, map(float, recall), strict=True)),
        f1=dict(zip(levels, map(float, f1), strict=True)),
        support=dict(zip(levels, map(int, support), strict=True)),
        # The macro average runs over the levels that occur in the data, so a data set
        # without `low` alerts is not charged a zero for it.
        macro_f1=sum(float(f1[index]) for index in present) / len(present),
        accuracy=sum(right) / len(truth),
        critical_recall=_share(critical, lambda index: predictions[index].level == "critical"),
        critical_or_high_recall=_share(critical, lambda index: predictions[index].level in ("critical", "high")),
        confident_share=coverage[threshold][0],
        confident_accuracy=coverage[threshold][1],
        confusion=confusion_matrix(truth, predicted, labels=list(levels)).tolist(),
        coverage=coverage,
        attribution=labelled.attribution,
        skipped=dict(labelled.skipped),
    )


def _on_scale(level: str, scale: str) -> str:
    return TO_PROMETHEUS[level] if scale == "prometheus" else level


def _share(indices: Sequence[int], hit: Any) -> float:
    return sum(1 for index in indices if hit(index)) / len(indices) if indices else 0.0


def _round(value: float) -> float:
    return round(float(value), 4)


# ---------------------------------------------------------------- output


def format_text(report: Report) -> str:
    """Return the figures as a table, the confusion matrix and the attribution, for a terminal."""
    lines = [
        f"data: {report.source} ({report.examples} alerts, {report.scale} scale)",
        f"model: {report.model_version}",
        "",
        f"{'level':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}",
    ]
    for level in report.levels:
        lines.append(
            f"{level:<10} {report.precision[level]:>9.3f} {report.recall[level]:>7.3f} "
            f"{report.f1[level]:>6.3f} {report.support[level]:>8}"
        )
    lines += [
        "",
        f"macro F1                {report.macro_f1:.3f}",
        f"accuracy                {report.accuracy:.3f}",
        f"critical recall         {report.critical_recall:.3f}",
        f"critical-or-high recall {report.critical_or_high_recall:.3f}",
        "",
        "confidence threshold  share of alerts at or above  accuracy of those",
    ]
    for cut, (share, accuracy) in report.coverage.items():
        marker = "  (--threshold)" if cut == report.threshold else ""
        right = f"{accuracy:.1%}" if share else "-"
        lines.append(f"{cut:>20.0%}  {share:>28.1%}  {right:>16}{marker}")
    lines += [
        "",
        "confusion matrix (rows: true level, columns: predicted level)",
        " " * 10 + "".join(f"{level:>10}" for level in report.levels),
    ]
    for level, row in zip(report.levels, report.confusion, strict=True):
        lines.append(f"{level:<10}" + "".join(f"{count:>10}" for count in row))
    if report.skipped:
        lines.append("")
        lines.append("skipped: " + ", ".join(f"{count} with {reason}" for reason, count in sorted(report.skipped.items())))
    if report.attribution:
        lines += ["", f"Data: {report.attribution}."]
    return "\n".join(lines) + "\n"


def render_svg(report: Report, title: str | None = None) -> str:
    """Return the confusion matrix as a standalone SVG picture: cells shaded by their share of the true level."""
    cell, left, top = 72, 120, 120
    size = len(report.levels)
    width = max(left + cell * size + 40, 640)
    height = top + cell * size + 96
    heading = title or f"Severity model {report.model_version}"
    middle = top + cell * size / 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="16" y="24" font-size="15" font-weight="bold">{escape(_shorten(heading, 70))}</text>',
        f'<text x="16" y="46">{escape(_shorten(report.source, 80))}</text>',
        f'<text x="16" y="66">{report.examples} alerts, macro F1 {report.macro_f1:.3f}, '
        f"critical recall {report.critical_recall:.3f}, accuracy {report.accuracy:.3f}</text>",
        f'<text x="{left + cell * size / 2}" y="{top - 28}" text-anchor="middle" font-style="italic">predicted level</text>',
        f'<text x="32" y="{middle}" transform="rotate(-90 32 {middle})" text-anchor="middle" font-style="italic">true level</text>',
    ]

    for column, level in enumerate(report.levels):
        parts.append(f'<text x="{left + column * cell + cell / 2}" y="{top - 8}" text-anchor="middle">{level}</text>')

    for row, (level, counts) in enumerate(zip(report.levels, report.confusion, strict=True)):
        y = top + row * cell
        parts.append(f'<text x="{left - 8}" y="{y + cell / 2 + 4}" text-anchor="end">{level}</text>')
        total = sum(counts) or 1
        for column, count in enumerate(counts):
            share = count / total
            x = left + column * cell
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{_shade(share, row == column)}" stroke="#ffffff"/>'
            )
            colour = "#ffffff" if share > 0.55 else "#1a1a1a"
            parts.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + 5}" text-anchor="middle" fill="{colour}">{count}</text>')

    footer = top + cell * size + 28
    parts.append(f'<text x="16" y="{footer}" font-size="11">Shade: share of the row (true level). Diagonal in blue.</text>')
    if report.attribution:
        parts.append(f'<text x="16" y="{footer + 18}" font-size="11">Data: {escape(report.attribution)}.</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _shade(share: float, diagonal: bool) -> str:
    """Return a colour from white to blue (diagonal) or to red (off the diagonal) for `share` in [0, 1]."""
    target = (31, 90, 166) if diagonal else (178, 34, 34)
    red, green, blue = (round(255 + (channel - 255) * share) for channel in target)
    return f"#{red:02x}{green:02x}{blue:02x}"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def reports_to_json(reports: Iterable[Report]) -> list[dict[str, Any]]:
    return [report.to_json() for report in reports]
