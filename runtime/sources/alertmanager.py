"""The Alertmanager webhook, payload version "4", and the group structure Grafana shares with it.

What the payload looks like and where consumers go wrong:

- The top-level `status` is the group's: each alert carries its own, and only
  that one is read.
- Firing alerts carry Go's zero time as `endsAt`, which means "none". A firing
  alert's non-zero `endsAt` is only the sender's guess of when it would expire,
  so it is kept in `details["expected_end"]` rather than as `ends_at`.
- `receiver` passes through Go's `regexp.QuoteMeta`, so `team.db` arrives as
  `team\\.db`. The unescaped name is recorded, and the raw string beside it.
- `truncatedAlerts` counts alerts the sender left out (`max_alerts`). They are
  recorded in `Outcome.details`. The payload gives no state for them, so
  they must not be resolved.
- `fingerprint` is used when it is 16 hex digits. Otherwise it is computed
  from the labels the way Alertmanager computes it.
- Unknown keys (`notification_reason`, `routeLabels`, ...) are ignored, apart
  from a few recorded in `Outcome.details`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from compiler.router import fingerprint
from runtime.alerts import FIRING, RESOLVED, SOURCE_SEVERITIES, Alert
from runtime.sources.base import ALERTS, Outcome, Rejected
from runtime.sources.fields import AlertText, parse_time
from runtime.sources.payload import kind_of, optional_list, optional_text, require_object, shown

VERSION = "4"
_FINGERPRINT = re.compile(r"[0-9a-fA-F]{16}")
# `regexp.QuoteMeta` puts a backslash before each of these characters.
_QUOTED_META = re.compile(r"\\([\\.+*?()|\[\]{}^$])")

# Per-alert extras a flavour adds to `Alert.details`, read from the alert's JSON object.
AlertExtras = Callable[[dict[str, Any], str], dict[str, Any]]


def normalise_alertmanager(document: Any, source: str) -> Outcome:
    """Turn an Alertmanager webhook body into one alert per entry of `alerts`.

    Raises:
        Rejected: 422 for another payload version, 400 for a malformed field.
    """
    body = require_object(document, "body")
    version = body.get("version")
    if version != VERSION:
        hint = " (Grafana sends version 1: post it to /hooks/grafana)" if version == "1" else ""
        raise Rejected(422, f"unsupported Alertmanager payload: `version` must be {VERSION!r}, not {version_text(version)}{hint}")
    return normalise_group(body, source)


def normalise_group(body: dict[str, Any], source: str, extras: AlertExtras | None = None) -> Outcome:
    """Turn a group notification (Alertmanager's `Data`, also used by Grafana) into an outcome."""
    receiver_raw = optional_text(body, "receiver", "receiver") or ""
    group = {
        "receiver": unquote_meta(receiver_raw),
        "receiver_raw": receiver_raw,
        "group_key": optional_text(body, "groupKey", "groupKey") or "",
    }
    truncated = _count(body.get("truncatedAlerts"), "truncatedAlerts")
    entries = optional_list(body.get("alerts"), "alerts")
    alerts = [_alert(entry, f"alerts[{index}]", source, group, extras) for index, entry in enumerate(entries)]

    details: dict[str, Any] = {**group, "truncated_alerts": truncated}
    for key, name in (("externalURL", "external_url"), ("notification_reason", "notification_reason")):
        value = body.get(key)
        if isinstance(value, str) and value:
            details[name] = value
    common = AlertText()
    common.add_labels(body.get("groupLabels"), "groupLabels")
    details["group_labels"] = common.labels

    note = f"{len(alerts)} alert(s)"
    if truncated:
        note += f"; the sender left out {truncated} more (max_alerts), whose state is unknown and stays as it was"
    return Outcome(source=source, kind=ALERTS, alerts=alerts, note=note, details=details)


def unquote_meta(text: str) -> str:
    """Undo Go's `regexp.QuoteMeta`: `team\\.db` becomes `team.db`."""
    return _QUOTED_META.sub(r"\1", text)


def source_severity(labels: dict[str, str]) -> str | None:
    """Return the `severity` label when it is one of the severities a sender may report."""
    value = labels.get("severity", "").strip().lower()
    return value if value in SOURCE_SEVERITIES else None


def _alert(entry: Any, where: str, source: str, group: dict[str, str], extras: AlertExtras | None) -> Alert:
    item = require_object(entry, where)
    status = item.get("status")
    if status not in (FIRING, RESOLVED):
        shown_status = shown(status) if isinstance(status, str) else kind_of(status)
        raise Rejected(400, f'`{where}.status` must be "firing" or "resolved", not {shown_status}')
    if item.get("labels") is None:
        raise Rejected(400, f"`{where}.labels` is missing")

    text = AlertText()
    text.add_labels(item["labels"], f"{where}.labels")
    text.add_annotations(item.get("annotations"), f"{where}.annotations")
    starts_at = parse_time(item.get("startsAt"), f"{where}.startsAt")
    ends_at = parse_time(item.get("endsAt"), f"{where}.endsAt")

    details: dict[str, Any] = dict(group)
    if status == FIRING and ends_at is not None:
        details["expected_end"] = ends_at.isoformat().replace("+00:00", "Z")
        ends_at = None
    if extras is not None:
        details.update(extras(item, where))

    reported = item.get("fingerprint")
    if isinstance(reported, str) and _FINGERPRINT.fullmatch(reported):
        identity = reported.lower()
    else:
        identity = fingerprint(text.labels)
    return text.alert(
        source=source,
        name=text.labels.get("alertname", ""),
        status=status,
        details=details,
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=identity,
        generator_url=optional_text(item, "generatorURL", f"{where}.generatorURL") or "",
        source_severity=source_severity(text.labels),
    )


def _count(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Rejected(400, f"`{where}` must be a whole number of at least 0, not {kind_of(value)}")
    return value


def version_text(version: Any) -> str:
    """Describe a payload's `version` value for an error message."""
    if isinstance(version, str):
        return shown(version)
    return "missing" if version is None else kind_of(version)
