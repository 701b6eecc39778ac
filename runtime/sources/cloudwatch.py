"""CloudWatch alarms, delivered by SNS (with or without raw message delivery) or by EventBridge.

SNS posts JSON with `Content-Type: text/plain`, so the body is parsed as JSON
whatever its content type. The form of a request is decided once, by
`request_form`, for both authentication and normalisation:

- `sns`: an SNS envelope (the body has a `Type`, or the request the
  `x-amz-sns-message-type` header). Only the fields SNS signs are read.
  `Notification` carries the alarm as JSON text in `Message`, or any other
  text, which becomes an `EVENT` outcome titled by `Subject`: plain text has no
  alarm identity or state, so it could never be resolved as an alert.
  `SubscriptionConfirmation` sets `Outcome.confirm_url` only for a topic listed
  in `confirm_subscriptions` and an `https` SNS URL. `UnsubscribeConfirmation`
  never does, because visiting its URL subscribes the endpoint again.
- `eventbridge`: an event with `detail-type` "CloudWatch Alarm State Change".
- `raw`: the alarm object alone (SNS raw message delivery), or any other body
  marked `x-amz-sns-rawdelivery: true`, which becomes an `EVENT` outcome.

An alarm becomes one alert. The fingerprint is `identity_fingerprint(AlarmArn)`,
so the OK that ends an ALARM carries its fingerprint. `ALARM` and
`INSUFFICIENT_DATA` fire (the latter with sender severity `info`), and `OK`
resolves. Labels: `alertname`, `aws_account`, `region` (the code from the ARN,
not the display name in `Region`), `cloudwatch_state`, `metric`
(`NAMESPACE:NAME`, single-metric alarms only) and one `dimension_NAME` per
dimension. A metric-math alarm takes the dimensions of its metrics, the first
metric to name a dimension giving its value.
"""

from __future__ import annotations

import datetime
from typing import Any

from compiler import ir
from runtime.alerts import FIRING, RESOLVED, Alert, identity_fingerprint
from runtime.sources.base import ALERTS, EVENT, SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION, Inbound, Outcome, Rejected
from runtime.sources.fields import MAX_VALUE_BYTES, AlertText, cap, parse_time
from runtime.sources.payload import (
    check_content,
    clean_strings,
    header,
    kind_of,
    optional_list,
    optional_object,
    optional_text,
    parse_json,
    require_object,
    require_text,
    shown,
)
from runtime.sources.sns import is_sns_url

NOTIFICATION = "Notification"
SUBSCRIPTION = "SubscriptionConfirmation"
UNSUBSCRIBE = "UnsubscribeConfirmation"
SNS_TYPES = (NOTIFICATION, SUBSCRIPTION, UNSUBSCRIBE)
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
_STATES = {"ALARM": FIRING, "INSUFFICIENT_DATA": FIRING, "OK": RESOLVED}
_TITLE_CHARS = 200


def request_form(inbound: Inbound, document: Any) -> str:
    """Return `sns`, `eventbridge` or `raw`: how a request to the cloudwatch source is read and authenticated.

    `document` is the parsed body, or `None` when the body is not JSON.
    """
    if isinstance(document, dict) and "Type" in document:
        return "sns"
    if (header(inbound, "x-amz-sns-rawdelivery") or "").strip().lower() == "true":
        return "raw"
    if header(inbound, "x-amz-sns-message-type") is not None:
        return "sns"
    if isinstance(document, dict) and "detail-type" in document:
        return "eventbridge"
    return "raw"


def load_document(inbound: Inbound) -> Any:
    """Parse the body as JSON whatever its content type; `None` when it is not JSON but marked as raw SNS delivery.

    Raises:
        Rejected: 400 for a body that is not JSON and not a raw SNS delivery.
    """
    check_content(inbound, any_content_type=True)
    try:
        return parse_json(inbound.body)
    except Rejected:
        if (header(inbound, "x-amz-sns-rawdelivery") or "").strip().lower() == "true":
            return None
        raise


def normalise_cloudwatch(inbound: Inbound, declaration: ir.Source | None, source: str) -> Outcome:
    """Turn a CloudWatch request (SNS, raw SNS delivery or EventBridge) into an outcome.

    Raises:
        Rejected: 400 for a malformed field, 422 for a message type or event this source does not read.
    """
    document = load_document(inbound)
    form = request_form(inbound, document)
    if document is None:
        return _text_event(source, inbound.body.decode("utf-8", "replace"), subject=None, envelope={})
    document, replaced = clean_strings(document)
    if form == "sns":
        outcome = _sns(inbound, document, declaration, source)
    elif form == "eventbridge":
        outcome = _eventbridge(require_object(document, "body"), source)
    else:
        outcome = _raw(document, source)
    if replaced:
        outcome.details["replaced_characters"] = replaced
    return outcome


def _sns(inbound: Inbound, document: Any, declaration: ir.Source | None, source: str) -> Outcome:
    envelope = require_object(document, "body")
    message_type = optional_text(envelope, "Type", "Type")
    header_type = header(inbound, "x-amz-sns-message-type")
    if message_type is None:
        raise Rejected(400, "`Type` is missing from the SNS message")
    if header_type is not None and header_type.strip() != message_type:
        raise Rejected(400, f"the x-amz-sns-message-type header {shown(header_type)} disagrees with `Type` {shown(message_type)}")
    if message_type not in SNS_TYPES:
        raise Rejected(422, f"unsupported SNS message `Type` {shown(message_type)}; expected one of {', '.join(SNS_TYPES)}")

    facts = {
        "message_id": require_text(envelope, "MessageId", "MessageId"),
        "topic_arn": require_text(envelope, "TopicArn", "TopicArn"),
        "sns_type": message_type,
    }
    if message_type == SUBSCRIPTION:
        return _subscription(envelope, declaration, source, facts)
    if message_type == UNSUBSCRIBE:
        note = f"unsubscribed from {facts['topic_arn']}; its URL is never visited, because that would subscribe again"
        return Outcome(source=source, kind=UNSUBSCRIBE_CONFIRMATION, note=note, details=facts)

    message = require_text(envelope, "Message", "Message")
    subject = optional_text(envelope, "Subject", "Subject")
    alarm = _json_object(message)
    if alarm is None or not _is_alarm(alarm):
        return _text_event(source, message, subject=subject, envelope=facts)
    alert = _sns_alarm(alarm, source, subject, facts)
    return Outcome(
        source=source, kind=ALERTS, alerts=[alert], note=f"alarm {alert.name} is {alarm['NewStateValue']}", details=facts
    )


def _subscription(envelope: dict[str, Any], declaration: ir.Source | None, source: str, facts: dict[str, Any]) -> Outcome:
    topic = facts["topic_arn"]
    url = require_text(envelope, "SubscribeURL", "SubscribeURL")
    allowed = declaration is not None and topic in declaration.confirm_subscriptions
    if not allowed:
        note = f"not confirmed: topic {topic} is not listed in `confirm_subscriptions` of `source {source}`"
        confirm_url = None
    elif not is_sns_url(url):
        note = f"not confirmed: SubscribeURL {shown(url)} is not an https URL on an SNS host"
        confirm_url = None
    else:
        note = f"confirming the subscription to {topic}"
        confirm_url = url
    return Outcome(source=source, kind=SUBSCRIPTION_CONFIRMATION, confirm_url=confirm_url, note=note, details=facts)


def _raw(document: Any, source: str) -> Outcome:
    alarm = require_object(document, "body")
    if not _is_alarm(alarm):
        raise Rejected(
            422,
            "unrecognised CloudWatch payload: expected an SNS message (`Type`), "
            "an EventBridge event (`detail-type`) or an alarm (`AlarmName`, `NewStateValue`)",
        )
    alert = _sns_alarm(alarm, source, None, {})
    return Outcome(source=source, kind=ALERTS, alerts=[alert], note=f"alarm {alert.name} is {alarm['NewStateValue']}")


def _text_event(source: str, message: str, *, subject: str | None, envelope: dict[str, Any]) -> Outcome:
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    title = (subject or first_line or "SNS message")[:_TITLE_CHARS]
    details = {**envelope, "title": title, "message": cap(message, MAX_VALUE_BYTES)[0]}
    if subject is not None:
        details["subject"] = subject
    return Outcome(source=source, kind=EVENT, note=title, details=details)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        document = parse_json(text.encode("utf-8", "replace"))
    except Rejected:
        return None
    return clean_strings(document)[0] if isinstance(document, dict) else None


def _is_alarm(document: dict[str, Any]) -> bool:
    return "AlarmName" in document and "NewStateValue" in document


def _sns_alarm(alarm: dict[str, Any], source: str, subject: str | None, facts: dict[str, Any]) -> Alert:
    where = "Message" if facts else "body"
    name = require_text(alarm, "AlarmName", f"{where}.AlarmName")
    state = _state(alarm.get("NewStateValue"), f"{where}.NewStateValue")
    arn = require_text(alarm, "AlarmArn", f"{where}.AlarmArn")
    trigger = optional_object(alarm.get("Trigger"), f"{where}.Trigger")
    moment = parse_time(alarm.get("StateChangeTime"), f"{where}.StateChangeTime")

    text = AlertText()
    account = optional_text(alarm, "AWSAccountId", f"{where}.AWSAccountId") or _arn_part(arn, 4)
    _alarm_labels(text, name, state, account, _arn_part(arn, 3))
    if isinstance(trigger.get("MetricName"), str):
        text.label("metric", _metric_name(trigger.get("Namespace"), trigger["MetricName"]))
        _add_dimensions(text, _named_dimensions(trigger.get("Dimensions"), f"{where}.Trigger.Dimensions"))
    for index, metric in enumerate(optional_list(trigger.get("Metrics"), f"{where}.Trigger.Metrics")):
        stat = optional_object(
            metric.get("MetricStat") if isinstance(metric, dict) else None, f"{where}.Trigger.Metrics[{index}]"
        )
        inner = optional_object(stat.get("Metric"), f"{where}.Trigger.Metrics[{index}].MetricStat.Metric")
        _add_dimensions(text, _named_dimensions(inner.get("Dimensions"), f"{where}.Trigger.Metrics[{index}].Dimensions"))
    description = alarm.get("AlarmDescription")
    text.annotation("summary", _summary(description, subject, state, name))
    text.annotation("description", description)
    text.annotation("state_reason", alarm.get("NewStateReason"))

    details = {**facts, "alarm_arn": arn, "old_state": alarm.get("OldStateValue"), "region_name": alarm.get("Region")}
    details.update(_trigger_summary(trigger))
    return _alarm_alert(text, source, name, state, arn, moment, None, details)


def _summary(description: Any, subject: str | None, state: str, name: str) -> str:
    """Return the alarm's summary: its description, which a person wrote, else the SNS subject or its state.

    The summary becomes the incident's title, which is set when the incident opens, so
    a summary that names the state ("ALARM: ...") would still read ALARM after the OK.
    """
    if isinstance(description, str) and description.strip():
        return description
    return subject or f'{state}: "{name}"'


def _eventbridge(event: dict[str, Any], source: str) -> Outcome:
    detail_type = event.get("detail-type")
    if detail_type != ALARM_STATE_CHANGE:
        found = shown(detail_type) if isinstance(detail_type, str) else kind_of(detail_type)
        raise Rejected(422, f"unsupported EventBridge `detail-type` {found}; expected {ALARM_STATE_CHANGE!r}")
    detail = require_object(event.get("detail"), "detail")
    name = require_text(detail, "alarmName", "detail.alarmName")
    current = require_object(detail.get("state"), "detail.state")
    previous = optional_object(detail.get("previousState"), "detail.previousState")
    state = _state(current.get("value"), "detail.state.value")
    region = optional_text(event, "region", "region")
    account = optional_text(event, "account", "account")
    resources = [item for item in optional_list(event.get("resources"), "resources") if isinstance(item, str)]
    arn = resources[0] if resources else f"arn:aws:cloudwatch:{region or ''}:{account or ''}:alarm:{name}"

    text = AlertText()
    _alarm_labels(text, name, state, account or _arn_part(arn, 4), _arn_part(arn, 3) or region)
    configuration = optional_object(detail.get("configuration"), "detail.configuration")
    metrics = [
        item for item in optional_list(configuration.get("metrics"), "detail.configuration.metrics") if isinstance(item, dict)
    ]
    for metric in metrics:
        stat = metric.get("metricStat")
        inner = stat.get("metric") if isinstance(stat, dict) else None
        if not isinstance(inner, dict):
            continue
        if len(metrics) == 1 and isinstance(inner.get("name"), str):
            text.label("metric", _metric_name(inner.get("namespace"), inner["name"]))
        dimensions = inner.get("dimensions")
        if isinstance(dimensions, dict):
            _add_dimensions(text, list(dimensions.items()))
    description = configuration.get("description")
    text.annotation("summary", _summary(description, None, state, name))
    text.annotation("description", description)
    text.annotation("state_reason", current.get("reason"))

    current_time = parse_time(current.get("timestamp"), "detail.state.timestamp")
    previous_time = parse_time(previous.get("timestamp"), "detail.previousState.timestamp")
    started = previous_time if _STATES[state] == RESOLVED and previous.get("value") in ("ALARM", "INSUFFICIENT_DATA") else None
    details = {"event_id": event.get("id"), "alarm_arn": arn, "old_state": previous.get("value")}
    alert = _alarm_alert(text, source, name, state, arn, current_time, started, details)
    return Outcome(
        source=source, kind=ALERTS, alerts=[alert], note=f"alarm {name} is {state}", details={"event_id": event.get("id")}
    )


def _alarm_labels(text: AlertText, name: str, state: str, account: str | None, region: str | None) -> None:
    text.label("alertname", name)
    text.label("aws_account", account)
    text.label("region", region)
    text.label("cloudwatch_state", state)


def _alarm_alert(
    text: AlertText,
    source: str,
    name: str,
    state: str,
    arn: str,
    moment: datetime.datetime | None,
    started: datetime.datetime | None,
    details: dict[str, Any],
) -> Alert:
    status = _STATES[state]
    return text.alert(
        source=source,
        name=name,
        status=status,
        details={key: value for key, value in details.items() if value is not None},
        starts_at=moment if status == FIRING else started,
        ends_at=moment if status == RESOLVED else None,
        fingerprint=identity_fingerprint(arn),
        source_severity="info" if state == "INSUFFICIENT_DATA" else None,
    )


def _state(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in _STATES:
        found = shown(value) if isinstance(value, str) else kind_of(value)
        raise Rejected(400, f"`{where}` must be ALARM, OK or INSUFFICIENT_DATA, not {found}")
    return value


def _arn_part(arn: str, index: int) -> str | None:
    """Return a field of `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE` (3 is the region, 4 the account)."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return None
    return parts[index] or None


def _metric_name(namespace: Any, name: str) -> str:
    return f"{namespace}:{name}" if isinstance(namespace, str) and namespace else name


def _named_dimensions(value: Any, where: str) -> list[tuple[str, Any]]:
    pairs = []
    for item in optional_list(value, where):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            pairs.append((item["name"], item.get("value")))
    return pairs


def _add_dimensions(text: AlertText, pairs: list[tuple[str, Any]]) -> None:
    for name, value in pairs:
        if name:
            text.label(f"dimension_{name}", value, replace=False)


def _trigger_summary(trigger: dict[str, Any]) -> dict[str, Any]:
    names = {
        "threshold": "Threshold",
        "comparison": "ComparisonOperator",
        "statistic": "Statistic",
        "extended_statistic": "ExtendedStatistic",
        "period_s": "Period",
        "evaluation_periods": "EvaluationPeriods",
    }
    summary = {name: trigger.get(key) for name, key in names.items()}
    return {name: value for name, value in summary.items() if isinstance(value, (str, int, float)) and value != ""}
