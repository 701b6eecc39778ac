"""Recognising which built-in source sent a payload, for `irules handle` without `--source`."""

from __future__ import annotations

from typing import Any

from runtime.sources.base import Inbound, Rejected
from runtime.sources.cloudwatch import ALARM_STATE_CHANGE, SNS_TYPES
from runtime.sources.names import ALERTMANAGER, AZURE, CLOUDWATCH, GRAFANA
from runtime.sources.payload import header, parse_json


def detect(inbound: Inbound) -> str:
    """Return the built-in source whose format the request has.

    SNS headers or an SNS `Type`, an EventBridge `detail-type` and a bare alarm
    mean cloudwatch; a `schemaId` means azure; an `orgId` or `version` "1"
    means grafana; `version` "4" means alertmanager.

    Raises:
        Rejected: 422 when the payload matches none of them, 400 when it is not JSON.
    """
    if header(inbound, "x-amz-sns-message-type") is not None or header(inbound, "x-amz-sns-rawdelivery") is not None:
        return CLOUDWATCH
    document = parse_json(inbound.body)
    found = _detect_document(document) if isinstance(document, dict) else None
    if found is None:
        raise Rejected(
            422,
            "unrecognised payload: expected an Alertmanager (version 4), Grafana (version 1), "
            "CloudWatch (SNS or EventBridge) or Azure Monitor (schemaId) alert; name the source explicitly",
        )
    return found


def _detect_document(document: dict[str, Any]) -> str | None:
    if document.get("Type") in SNS_TYPES and "TopicArn" in document:
        return CLOUDWATCH
    if document.get("detail-type") == ALARM_STATE_CHANGE or ("AlarmName" in document and "NewStateValue" in document):
        return CLOUDWATCH
    if any(key.lower() == "schemaid" for key in document):
        return AZURE
    if "orgId" in document or document.get("version") == "1":
        return GRAFANA
    if document.get("version") == "4":
        return ALERTMANAGER
    return None
