"""Features of an alert for the severity classifier: its text and its labels.

An alert becomes one row of two strings. The first is its text: the alert name
split into words, then the summary and the description. The second is its labels
as space-separated tokens, `key` for every label and `key=value` for the labels
whose values look categorical. The fitted pipeline in `runtime.triage.classifier`
turns the text into word and character n-gram TF-IDF features and the label
tokens into binary indicators.

Alert data is hostile, so every field is cut to a fixed length here, before any
vectorizer runs its fixed token patterns over it, and labels are capped in number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Cut each text field to this many characters; alert descriptions longer than this are
# log excerpts or stack traces, whose tail says nothing more about severity.
MAX_FIELD_CHARS = 1000
MAX_LABELS = 64
MAX_LABEL_VALUE_CHARS = 64

# Labels that never become features. `severity` and `priority` are the sender's own level,
# which the caller weighs separately (the classifier would otherwise learn to copy it), and
# `alertname` is already part of the text.
IGNORED_LABELS = frozenset({"alertname", "severity", "priority", "__name__"})

# Annotations read as the description, in order of preference.
DESCRIPTION_ANNOTATIONS = ("description", "message")


@dataclass(frozen=True, slots=True)
class AlertText:
    """The parts of an alert the classifier reads."""

    name: str
    summary: str = ""
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_alert(cls, alert: Any) -> AlertText:
        """Take name, summary, description and labels from a `runtime.alerts.Alert` or a stored alert row."""
        annotations = _mapping(_field(alert, "annotations"))
        description = next((annotations[key] for key in DESCRIPTION_ANNOTATIONS if annotations.get(key)), "")
        return cls(
            name=str(_field(alert, "name") or ""),
            summary=str(annotations.get("summary") or ""),
            description=str(description),
            labels=_mapping(_field(alert, "labels")),
        )


def split_identifier(name: str) -> str:
    """Split a CamelCase, snake_case or kebab-case name into lower-case words.

    `KubePodCrashLooping` becomes `kube pod crash looping`, `HTTPErrorRate`
    becomes `http error rate` and `node_disk_full` becomes `node disk full`.
    Digits stay with the letters before them (`P99Latency` becomes `p99 latency`).
    """
    words: list[str] = []
    current: list[str] = []
    text = name[:MAX_FIELD_CHARS]
    for index, char in enumerate(text):
        if not char.isalnum():
            _flush(words, current)
            continue
        if current and char.isupper():
            previous = text[index - 1]
            following = text[index + 1] if index + 1 < len(text) else ""
            # A capital starts a word after a lower-case letter or digit (`podCrash`),
            # and ends an acronym before a capitalised word (`HTTPError`).
            if previous.islower() or previous.isdigit() or (previous.isupper() and following.islower()):
                _flush(words, current)
        current.append(char)
    _flush(words, current)
    return " ".join(words)


def _flush(words: list[str], current: list[str]) -> None:
    if current:
        words.append("".join(current).lower())
        current.clear()


def alert_text(alert: AlertText) -> str:
    """Return the text features read: the name as words, the summary and the description."""
    parts = [split_identifier(alert.name), alert.summary[:MAX_FIELD_CHARS], alert.description[:MAX_FIELD_CHARS]]
    return " . ".join(part for part in parts if part)


def label_tokens(labels: Mapping[str, str]) -> str:
    """Return the labels as tokens: `key` for each label, and `key=value` when the value is categorical.

    A value is categorical when it is short and at most a fifth of it is digits
    (`env=production`, `metric=AWS/EC2:CPUUtilization`) or it is a small number
    (`tier=1`). Addresses, pod names and versions are mostly digits and unique per
    alert, so only their key is kept.
    Tokens are lower case and contain no whitespace.
    """
    tokens: list[str] = []
    for key in sorted(labels)[:MAX_LABELS]:
        name = _token(key)
        if not name or key in IGNORED_LABELS:
            continue
        tokens.append(name)
        value = str(labels[key])
        if _categorical(value):
            tokens.append(f"{name}={_token(value)}")
    return " ".join(tokens)


def _categorical(value: str) -> bool:
    if not value or len(value) > MAX_LABEL_VALUE_CHARS:
        return False
    if value.isdigit():
        return len(value) <= 3
    digits = sum(char.isdigit() for char in value)
    return digits * 5 <= len(value)


def _token(text: str) -> str:
    return "".join("_" if char.isspace() else char for char in text[:MAX_LABEL_VALUE_CHARS].lower())


def feature_rows(alerts: Iterable[AlertText]) -> np.ndarray:
    """Return the classifier's input: one row of (text, label tokens) per alert, as an object array."""
    rows = [(alert_text(alert), label_tokens(alert.labels)) for alert in alerts]
    matrix = np.empty((len(rows), 2), dtype=object)
    for index, (text, tokens) in enumerate(rows):
        matrix[index, 0] = text
        matrix[index, 1] = tokens
    return matrix


def _field(alert: Any, name: str) -> Any:
    if isinstance(alert, Mapping):
        return alert.get(name)
    return getattr(alert, name, None)


def _mapping(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(key): "" if item is None else str(item) for key, item in value.items()}
