"""The one alert model every source normalises into.

A source turns a vendor payload into `Alert` values. Everything after that (the
store, deduplication, grouping, severity, routing) reads only this model, so a
new source never touches the pipeline.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FIRING = "firing"
RESOLVED = "resolved"

# Severities a source may report, lower-case, as PagerDuty and Alertmanager's
# receivers spell them. The incident's level comes from the rules; this is
# only the severity the sender reported.
SOURCE_SEVERITIES = ("critical", "error", "warning", "info")

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_SEPARATOR = 0xFF


def fnv64a(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value ^= byte
        value = (value * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


def identity_fingerprint(identity: str) -> str:
    """Return a 16-hex fingerprint for a source's own stable alert identity, such as an alarm ARN.

    The value hashes a label set of one label `__identity__`, so it lives in the
    same space as Alertmanager fingerprints without colliding with real labels.
    """
    data = b"__identity__\xff" + identity.encode("utf-8", "surrogatepass") + b"\xff"
    return f"{fnv64a(data):016x}"


@dataclass(slots=True)
class Alert:
    """One alert in the pipeline, whichever source sent it.

    `fingerprint` is the alert's identity across repeats: the sender's own when it
    has one (Alertmanager's, a CloudWatch alarm ARN, an Azure alert id), else the
    Alertmanager fingerprint of `labels`. A resolution carries the same
    fingerprint as the firing it ends. `starts_at` and `ends_at` are aware UTC
    datetimes or `None` when the sender gave none (Go's zero time counts as none).
    """

    source: str
    name: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: datetime.datetime | None = None
    ends_at: datetime.datetime | None = None
    fingerprint: str = ""
    generator_url: str = ""
    source_severity: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in (FIRING, RESOLVED):
            raise ValueError(f"alert status must be firing or resolved, not {self.status!r}")
        if "alertname" not in self.labels and self.name:
            self.labels["alertname"] = self.name
        if not self.fingerprint:
            from compiler.router import fingerprint

            self.fingerprint = fingerprint(self.labels)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "starts_at": _iso(self.starts_at),
            "ends_at": _iso(self.ends_at),
            "fingerprint": self.fingerprint,
            "generator_url": self.generator_url,
            "source_severity": self.source_severity,
            "details": self.details,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, status: str | None = None) -> Alert:
        """Return the alert of a row of the `alerts` table, with `status`, when given, in place of the stored one."""
        return cls(
            source=row["source"],
            name=row["name"],
            status=status or row["status"],
            labels=dict(row["labels"]),
            annotations=dict(row["annotations"] or {}),
            fingerprint=row["fingerprint"],
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        return cls(
            source=data["source"],
            name=data["name"],
            status=data["status"],
            labels=dict(data["labels"]),
            annotations=dict(data.get("annotations") or {}),
            starts_at=_parse_iso(data.get("starts_at")),
            ends_at=_parse_iso(data.get("ends_at")),
            fingerprint=data.get("fingerprint") or "",
            generator_url=data.get("generator_url") or "",
            source_severity=data.get("source_severity"),
            details=dict(data.get("details") or {}),
        )


def _iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text)
