"""Azure Monitor alerts: the common alert schema and the older `AzureMonitorMetricAlert` schema.

Both arrive at the same endpoint and are distinguished by `schemaId` (compared
without regard to case); any other schema is rejected with 422. Azure sends
`null` where an object or string is expected and spells some keys in more
than one case (`alertRuleId`, `alertRuleID`), so every key is looked up
without regard to case and every field but the status may be null.

Common schema, `data.essentials`:

- fingerprint: `identity_fingerprint(alertId)` (falling back to
  `originAlertId`), so the resolution of an alert carries the fingerprint of
  its firing;
- name: `alertRule`, else the last segment of `alertRuleId`, else
  `azure-monitor-alert`;
- status: `monitorCondition` `Fired` → firing, `Resolved` → resolved;
- severity: Sev0 critical, Sev1 error, Sev2 warning, Sev3 and Sev4 info;
- labels: `resource`, `resource_group` and `subscription` from the first
  target id, one `dimension_NAME` per metric dimension, then the
  `customProperties`, which never replace a label set before them;
- `starts_at` is `firedDateTime`, `ends_at` is `resolvedDateTime`.

Legacy schema, `data.context`: `status` `Activated` → firing, `Resolved` →
resolved; name from `context.name`; `severity` "0"…"4" as Sev0…Sev4; the
fingerprint hashes the rule id with the resource, as that schema has no alert
id.
"""

from __future__ import annotations

from typing import Any

from runtime.alerts import FIRING, RESOLVED, Alert, identity_fingerprint
from runtime.sources.base import ALERTS, Outcome, Rejected
from runtime.sources.fields import AlertText, parse_time, stringify
from runtime.sources.payload import get_folded, kind_of, require_object, shown

COMMON_SCHEMA = "azureMonitorCommonAlertSchema"
LEGACY_METRIC_SCHEMA = "AzureMonitorMetricAlert"
FALLBACK_NAME = "azure-monitor-alert"
SEVERITIES = {"0": "critical", "1": "error", "2": "warning", "3": "info", "4": "info"}
_COMMON_STATUS = {"fired": FIRING, "resolved": RESOLVED}
_LEGACY_STATUS = {"activated": FIRING, "resolved": RESOLVED}


def normalise_azure(document: Any, source: str) -> Outcome:
    """Turn an Azure Monitor alert body into one alert.

    Raises:
        Rejected: 422 for a missing or unknown `schemaId`, 400 for a malformed field.
    """
    body = require_object(document, "body")
    schema = get_folded(body, "schemaId")
    if not isinstance(schema, str):
        raise Rejected(422, f"unsupported Azure payload: `schemaId` is {kind_of(schema)}; expected {COMMON_SCHEMA!r}")
    data = require_object(get_folded(body, "data"), "data")
    if schema.lower() == COMMON_SCHEMA.lower():
        alert = _common_alert(data, source)
    elif schema.lower() == LEGACY_METRIC_SCHEMA.lower():
        alert = _legacy_alert(data, source)
    else:
        raise Rejected(
            422,
            f"unsupported Azure payload: `schemaId` {shown(schema)} is neither {COMMON_SCHEMA!r} nor {LEGACY_METRIC_SCHEMA!r}; "
            "enable the common alert schema in the action group",
        )
    return Outcome(source=source, kind=ALERTS, alerts=[alert], note=f"azure {schema}", details={"schema_id": schema})


def severity_of(value: Any) -> str | None:
    """Map Azure's `Sev0`…`Sev4` (or the legacy "0"…"4") to a sender severity, `None` when unknown."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return None
    text = str(value).strip().lower().removeprefix("sev").strip()
    return SEVERITIES.get(text)


def _common_alert(data: dict[str, Any], source: str) -> Alert:
    essentials = require_object(get_folded(data, "essentials"), "data.essentials")
    where = "data.essentials"
    status = _status(get_folded(essentials, "monitorCondition"), f"{where}.monitorCondition", _COMMON_STATUS)
    alert_id = _text(essentials, "alertId") or _text(essentials, "originAlertId")
    if alert_id is None:
        raise Rejected(400, f"`{where}.alertId` is missing")
    rule_id = _text(essentials, "alertRuleId")
    name = _text(essentials, "alertRule") or _last_segment(rule_id) or FALLBACK_NAME
    targets = [item for item in _list(get_folded(essentials, "alertTargetIDs")) if isinstance(item, str)]
    target = targets[0] if targets else ""

    text = AlertText()
    text.label("alertname", name)
    text.label("resource", _last_segment(target) or _first_text(get_folded(essentials, "configurationItems")))
    text.label("resource_group", _segment_after(target, "resourcegroups") or _text(essentials, "targetResourceGroup"))
    text.label("subscription", _segment_after(target, "subscriptions") or _segment_after(alert_id, "subscriptions"))
    context = get_folded(data, "alertContext")
    criteria = _criteria(get_folded(context, "condition") if isinstance(context, dict) else None)
    _add_dimensions(text, criteria)
    _add_custom_properties(text, get_folded(data, "customProperties"))
    text.annotation("description", _text(essentials, "description"))

    details = {
        "alert_id": alert_id,
        "alert_rule_id": rule_id,
        "severity": stringify(get_folded(essentials, "severity")),
        "signal_type": _text(essentials, "signalType"),
        "monitoring_service": _text(essentials, "monitoringService"),
        "condition_type": _text(context, "conditionType") if isinstance(context, dict) else None,
        "target_ids": targets,
        "criteria": [_criterion_summary(item) for item in criteria],
    }
    return text.alert(
        source=source,
        name=name,
        status=status,
        details={key: value for key, value in details.items() if value not in (None, [])},
        starts_at=parse_time(get_folded(essentials, "firedDateTime"), f"{where}.firedDateTime"),
        ends_at=parse_time(get_folded(essentials, "resolvedDateTime"), f"{where}.resolvedDateTime")
        if status == RESOLVED
        else None,
        fingerprint=identity_fingerprint(alert_id),
        generator_url=_text(essentials, "investigationLink") or "",
        source_severity=severity_of(get_folded(essentials, "severity")),
    )


def _legacy_alert(data: dict[str, Any], source: str) -> Alert:
    status = _status(get_folded(data, "status"), "data.status", _LEGACY_STATUS)
    context = require_object(get_folded(data, "context"), "data.context")
    rule_id = _text(context, "id")
    name = _text(context, "name") or _last_segment(rule_id) or FALLBACK_NAME
    resource_id = _text(context, "resourceId")
    resource = _text(context, "resourceName") or _last_segment(resource_id)

    text = AlertText()
    text.label("alertname", name)
    text.label("resource", resource)
    text.label("resource_group", _text(context, "resourceGroupName") or _segment_after(resource_id or "", "resourcegroups"))
    text.label("subscription", _text(context, "subscriptionId") or _segment_after(rule_id or "", "subscriptions"))
    criteria = _criteria(get_folded(context, "condition"))
    _add_dimensions(text, criteria)
    _add_custom_properties(text, get_folded(data, "properties"))
    text.annotation("description", _text(context, "description"))

    moment = parse_time(get_folded(context, "timestamp"), "data.context.timestamp")
    details = {
        "alert_rule_id": rule_id,
        "severity": stringify(get_folded(context, "severity")),
        "condition_type": _text(context, "conditionType"),
        "criteria": [_criterion_summary(item) for item in criteria],
    }
    return text.alert(
        source=source,
        name=name,
        status=status,
        details={key: value for key, value in details.items() if value not in (None, [])},
        starts_at=moment if status == FIRING else None,
        ends_at=moment if status == RESOLVED else None,
        fingerprint=identity_fingerprint(f"{rule_id or name}|{resource_id or resource or ''}"),
        generator_url=_text(context, "portalLink") or "",
        source_severity=severity_of(get_folded(context, "severity")),
    )


def _status(value: Any, where: str, names: dict[str, str]) -> str:
    status = names.get(value.strip().lower()) if isinstance(value, str) else None
    if status is None:
        expected = " or ".join(f'"{name.capitalize()}"' for name in names)
        found = shown(value) if isinstance(value, str) else kind_of(value)
        raise Rejected(400, f"`{where}` must be {expected}, not {found}")
    return status


def _text(mapping: Any, key: str) -> str | None:
    if not isinstance(mapping, dict):
        return None
    value = get_folded(mapping, key)
    return value if isinstance(value, str) and value else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _first_text(value: Any) -> str | None:
    return next((item for item in _list(value) if isinstance(item, str) and item), None)


def _last_segment(resource_id: str | None) -> str | None:
    """Return the last segment of an ARM id such as `/subscriptions/…/virtualMachines/vm-1`."""
    if not resource_id:
        return None
    return resource_id.rstrip("/").rsplit("/", 1)[-1] or None


def _segment_after(resource_id: str, name: str) -> str | None:
    """Return the segment after `/NAME/` in an ARM id, comparing `NAME` without regard to case."""
    parts = resource_id.split("/")
    for index, part in enumerate(parts[:-1]):
        if part.lower() == name and parts[index + 1]:
            return parts[index + 1]
    return None


def _criteria(condition: Any) -> list[dict[str, Any]]:
    if not isinstance(condition, dict):
        return []
    return [item for item in _list(get_folded(condition, "allOf")) if isinstance(item, dict)]


def _add_dimensions(text: AlertText, criteria: list[dict[str, Any]]) -> None:
    # With several criteria, the first one to name a dimension gives its value.
    for criterion in criteria:
        for dimension in _list(get_folded(criterion, "dimensions")):
            if isinstance(dimension, dict):
                name = get_folded(dimension, "name")
                if isinstance(name, str) and name:
                    text.label(f"dimension_{name}", get_folded(dimension, "value"), replace=False)


def _add_custom_properties(text: AlertText, properties: Any) -> None:
    if isinstance(properties, dict):
        text.add_labels(properties, "data.customProperties", replace=False)


def _criterion_summary(criterion: dict[str, Any]) -> dict[str, Any]:
    names = {
        "metric": "metricName",
        "namespace": "metricNamespace",
        "operator": "operator",
        "threshold": "threshold",
        "aggregation": "timeAggregation",
        "value": "metricValue",
    }
    summary = {name: get_folded(criterion, key) for name, key in names.items()}
    return {name: value for name, value in summary.items() if isinstance(value, (str, int, float)) and value != ""}
