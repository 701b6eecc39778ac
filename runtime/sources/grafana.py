"""The Grafana unified alerting webhook, payload version "1".

The body is Alertmanager's group notification with extra keys. The labels and
annotations are kept exactly as the rule's author wrote them. Grafana's own
additions go into each alert's `details`, because they describe the
evaluation rather than the alert:

- `values`: the query results, an object of name → number (left out when
  Grafana sends `null`);
- `value_string`, `dashboard_url`, `panel_url`, `silence_url`, `image_url`,
  `rule_uid`: copied when they are non-empty strings, capped like annotations;
- `org_id`: the organisation number.

`Outcome.details` adds the group's `org_id`, `title` and legacy `state`.

The fingerprint is Grafana's, which hashes private labels that Grafana strips
before sending, so it cannot be recomputed from the visible labels.
"""

from __future__ import annotations

from typing import Any

from runtime.sources.alertmanager import normalise_group, version_text
from runtime.sources.base import Outcome, Rejected
from runtime.sources.fields import MAX_VALUE_BYTES, cap
from runtime.sources.payload import require_object

VERSION = "1"
_TEXT_DETAILS = {
    "valueString": "value_string",
    "dashboardURL": "dashboard_url",
    "panelURL": "panel_url",
    "silenceURL": "silence_url",
    "imageURL": "image_url",
    "ruleUID": "rule_uid",
    "orgId": "org_id",
}
_GROUP_DETAILS = {"orgId": "org_id", "title": "title", "state": "state"}


def normalise_grafana(document: Any, source: str) -> Outcome:
    """Turn a Grafana webhook body into one alert per entry of `alerts`.

    Raises:
        Rejected: 422 for another payload version, 400 for a malformed field.
    """
    body = require_object(document, "body")
    version = body.get("version")
    if version != VERSION:
        hint = " (Alertmanager sends version 4: post it to /hooks/alertmanager)" if version == "4" else ""
        raise Rejected(422, f"unsupported Grafana payload: `version` must be {VERSION!r}, not {version_text(version)}{hint}")
    outcome = normalise_group(body, source, _alert_details)
    outcome.details.update(_text_details(body, _GROUP_DETAILS))
    return outcome


def _alert_details(item: dict[str, Any], where: str) -> dict[str, Any]:
    details = _text_details(item, _TEXT_DETAILS)
    values = item.get("values")
    if values is not None:
        details["values"] = require_object(values, f"{where}.values")
    return details


def _text_details(item: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    copied: dict[str, Any] = {}
    for key, name in names.items():
        value = item.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            copied[name] = value
        elif isinstance(value, str) and value:
            copied[name] = cap(value, MAX_VALUE_BYTES)[0]
    return copied
