"""The CloudWatch source: alarms via SNS, raw delivery and EventBridge, the shared fixtures and case C20."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from compiler.api import check_text
from runtime.alerts import FIRING, RESOLVED, identity_fingerprint
from runtime.sources import (
    ALERTS,
    EVENT,
    SUBSCRIPTION_CONFIRMATION,
    UNSUBSCRIBE_CONFIRMATION,
    Inbound,
    Rejected,
    normalise,
)

FIXTURES = Path(__file__).parent / "fixtures" / "cloudwatch"
UTC = datetime.UTC
SNS_HEADERS = {"content-type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}
C20_ARN = "arn:aws:cloudwatch:eu-south-1:111111111111:alarm:queue-lag"
C20_TOPIC = "arn:aws:sns:eu-south-1:111111111111:alarms"
FIXTURE_TOPIC = "arn:aws:sns:us-east-1:123456789012:incident-alarms"

RULES = f"""
team ops {{ webhook "https://hooks.example.com/o" }}
route {{ receiver ops }}
source cloudwatch {{
  confirm_subscriptions ["{C20_TOPIC}", "{FIXTURE_TOPIC}"]
}}
"""


def alarm_message(state: str, old: str) -> str:
    return json.dumps(
        {
            "AlarmName": "queue-lag",
            "AlarmDescription": "consumer lag",
            "AWSAccountId": "111111111111",
            "NewStateValue": state,
            "NewStateReason": "Threshold Crossed: 2 datapoints ...",
            "StateChangeTime": "2024-03-08T10:00:00.306+0000",
            "Region": "EU (Milan)",
            "AlarmArn": C20_ARN,
            "OldStateValue": old,
            "Trigger": {
                "MetricName": "Lag",
                "Namespace": "App/Kafka",
                "Statistic": "AVERAGE",
                "Dimensions": [{"value": "orders", "name": "Topic"}],
                "Threshold": 1.0,
            },
        },
        separators=(",", ":"),
    )


def c20_envelope(message: str, subject: str = 'ALARM: "queue-lag" in EU (Milan)', message_type: str = "Notification") -> dict:
    return {
        "Type": message_type,
        "MessageId": "00000000-0000-0000-0000-000000000001",
        "TopicArn": C20_TOPIC,
        "Subject": subject,
        "Message": message,
        "Timestamp": "2024-03-08T10:00:00.400Z",
        "SignatureVersion": "1",
        "Signature": "PLACEHOLDER",
        "SigningCertURL": "https://sns.eu-south-1.amazonaws.com/PLACEHOLDER.pem",
        "UnsubscribeURL": "https://sns.eu-south-1.amazonaws.com/?Action=Unsubscribe&PLACEHOLDER",
    }


@pytest.fixture(scope="module")
def ruleset() -> object:
    return check_text(RULES, "sources.irules").ruleset()


def run(document: object, headers: dict[str, str] | None = None, ruleset: object = None) -> object:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return normalise("cloudwatch", Inbound(body=body, headers=SNS_HEADERS if headers is None else headers), ruleset)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_c20_alarm_becomes_one_firing_alert() -> None:
    outcome = run(c20_envelope(alarm_message("ALARM", "OK")))
    assert outcome.kind == ALERTS
    (alert,) = outcome.alerts
    assert alert.name == "queue-lag"
    assert alert.status == FIRING
    assert alert.starts_at == datetime.datetime(2024, 3, 8, 10, 0, 0, 306000, tzinfo=UTC)
    assert alert.ends_at is None
    assert alert.fingerprint == identity_fingerprint(C20_ARN)


def test_c20_labels() -> None:
    (alert,) = run(c20_envelope(alarm_message("ALARM", "OK"))).alerts
    assert alert.labels["aws_account"] == "111111111111"
    assert alert.labels["region"] == "eu-south-1"
    assert alert.labels["dimension_Topic"] == "orders"
    assert alert.labels["metric"] == "App/Kafka:Lag"
    assert alert.labels["cloudwatch_state"] == "ALARM"
    assert alert.labels["alertname"] == "queue-lag"
    assert alert.details["region_name"] == "EU (Milan)"


def test_c20_ok_resolves_with_same_fingerprint() -> None:
    (firing,) = run(c20_envelope(alarm_message("ALARM", "OK"))).alerts
    (resolved,) = run(c20_envelope(alarm_message("OK", "ALARM"), subject='OK: "queue-lag" in EU (Milan)')).alerts
    assert resolved.status == RESOLVED
    assert resolved.fingerprint == firing.fingerprint
    assert resolved.ends_at == datetime.datetime(2024, 3, 8, 10, 0, 0, 306000, tzinfo=UTC)
    assert resolved.labels["cloudwatch_state"] == "OK"


def test_c20_insufficient_data_fires_as_info() -> None:
    (alert,) = run(c20_envelope(alarm_message("INSUFFICIENT_DATA", "OK"))).alerts
    assert alert.status == FIRING
    assert alert.source_severity == "info"
    assert alert.labels["cloudwatch_state"] == "INSUFFICIENT_DATA"


def test_c20_body_parsed_whatever_content_type() -> None:
    for content_type in ("text/plain; charset=UTF-8", "application/octet-stream", "application/x-www-form-urlencoded"):
        headers = {"content-type": content_type, "x-amz-sns-message-type": "Notification"}
        assert run(c20_envelope(alarm_message("ALARM", "OK")), headers).alerts[0].name == "queue-lag"


def test_c20_type_taken_from_body_without_header() -> None:
    assert run(c20_envelope(alarm_message("ALARM", "OK")), headers={}).alerts[0].status == FIRING


def test_c20_plain_text_message_is_an_event() -> None:
    outcome = run(c20_envelope("hey there", subject="Hello from ops"))
    assert outcome.kind == EVENT
    assert outcome.alerts == []
    assert outcome.note == "Hello from ops"
    assert outcome.details["message"] == "hey there"
    assert outcome.details["topic_arn"] == C20_TOPIC


def test_plain_text_without_subject_titled_by_first_line() -> None:
    envelope = c20_envelope("first line\nsecond")
    del envelope["Subject"]
    outcome = run(envelope)
    assert outcome.kind == EVENT
    assert outcome.note == "first line"


def test_c20_subscription_confirmed_for_listed_topic(ruleset: object) -> None:
    envelope = c20_envelope("You have chosen to subscribe ...", message_type="SubscriptionConfirmation")
    del envelope["Subject"]
    envelope["Token"] = "TOKEN"
    envelope["SubscribeURL"] = "https://sns.eu-south-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=TOKEN"
    headers = {"x-amz-sns-message-type": "SubscriptionConfirmation"}
    outcome = run(envelope, headers, ruleset)
    assert outcome.kind == SUBSCRIPTION_CONFIRMATION
    assert outcome.confirm_url == envelope["SubscribeURL"]
    assert outcome.alerts == []


def test_subscription_for_unlisted_topic_is_not_confirmed(ruleset: object) -> None:
    envelope = json.loads(fixture("sns-subscription-confirmation.json"))
    envelope["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:someone-else"
    outcome = run(envelope, {"x-amz-sns-message-type": "SubscriptionConfirmation"}, ruleset)
    assert outcome.kind == SUBSCRIPTION_CONFIRMATION
    assert outcome.confirm_url is None
    assert "not listed in `confirm_subscriptions`" in outcome.note


def test_subscription_without_rules_is_not_confirmed() -> None:
    outcome = run(fixture("sns-subscription-confirmation.json"), {"x-amz-sns-message-type": "SubscriptionConfirmation"})
    assert outcome.kind == SUBSCRIPTION_CONFIRMATION
    assert outcome.confirm_url is None


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        "https://sns.us-east-1.amazonaws.com.evil.example/?Action=ConfirmSubscription",
        "https://evil.example/?Action=ConfirmSubscription",
        "https://user:pw@sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        "https://sns.us-east-1.amazonaws.com:8443/?Action=ConfirmSubscription",
        "https://127.0.0.1/?Action=ConfirmSubscription",
    ],
)
def test_subscription_url_off_sns_host_is_not_confirmed(ruleset: object, url: str) -> None:
    envelope = json.loads(fixture("sns-subscription-confirmation.json"))
    envelope["SubscribeURL"] = url
    outcome = run(envelope, {"x-amz-sns-message-type": "SubscriptionConfirmation"}, ruleset)
    assert outcome.confirm_url is None
    assert "not an https URL on an SNS host" in outcome.note


def test_fixture_subscription_confirmed_for_listed_topic(ruleset: object) -> None:
    outcome = run(fixture("sns-subscription-confirmation.json"), {"x-amz-sns-message-type": "SubscriptionConfirmation"}, ruleset)
    assert outcome.confirm_url == (
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
        "&TopicArn=arn:aws:sns:us-east-1:123456789012:incident-alarms&Token=TOKEN-PLACEHOLDER"
    )


def test_c20_unsubscribe_confirmation_never_gives_url(ruleset: object) -> None:
    envelope = json.loads(fixture("sns-subscription-confirmation.json"))
    envelope["Type"] = "UnsubscribeConfirmation"
    outcome = run(envelope, {"x-amz-sns-message-type": "UnsubscribeConfirmation"}, ruleset)
    assert outcome.kind == UNSUBSCRIBE_CONFIRMATION
    assert outcome.confirm_url is None
    assert outcome.alerts == []


def test_fixture_sns_alarm() -> None:
    outcome = run(fixture("sns-alarm.json"))
    (alert,) = outcome.alerts
    assert alert.name == "web-cpu-high"
    assert alert.status == FIRING
    assert alert.fingerprint == identity_fingerprint("arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-cpu-high")
    assert alert.labels == {
        "alertname": "web-cpu-high",
        "aws_account": "123456789012",
        "region": "us-east-1",
        "cloudwatch_state": "ALARM",
        "metric": "AWS/EC2:CPUUtilization",
        "dimension_AutoScalingGroupName": "web-asg",
    }
    # The description, which a person wrote, is the summary, rather than the subject that names the state.
    assert alert.annotations["summary"] == "CPU above 80% for 10 minutes on the web tier"
    assert alert.annotations["description"] == "CPU above 80% for 10 minutes on the web tier"
    assert alert.starts_at == datetime.datetime(2024, 5, 14, 9, 20, 31, 892000, tzinfo=UTC)
    assert outcome.details["message_id"] == "3b1f6a52-9c0e-5d27-a8f4-0123456789ab"
    assert alert.details["threshold"] == 80.0


def test_fixture_metric_math_ok() -> None:
    (alert,) = run(fixture("sns-alarm-ok-metric-math.json")).alerts
    assert alert.status == RESOLVED
    assert alert.fingerprint == identity_fingerprint("arn:aws:cloudwatch:us-east-1:123456789012:alarm:api-5xx-ratio")
    assert alert.labels["dimension_LoadBalancer"] == "app/api-alb/0123456789abcdef"
    assert "metric" not in alert.labels
    assert "description" not in alert.annotations
    assert alert.ends_at == datetime.datetime(2024, 5, 14, 10, 7, 12, 404000, tzinfo=UTC)


def test_fixture_unicode_alarm() -> None:
    (alert,) = run(fixture("sns-alarm-unicode.json")).alerts
    assert alert.name == "payments-latency-p99 / eu-west-1 / 決済"
    assert alert.labels["region"] == "eu-west-1"
    assert alert.labels["metric"] == "Payments/API:Latency"
    assert alert.labels["dimension_Version"] == "v2024.05.13-rc.1+build.77"
    assert alert.annotations["description"].startswith("決済APIのレイテンシ p99 が 2 秒超 ⏱️\nRunbook:")
    assert '"quoted" & <angle>' in alert.annotations["description"]
    assert alert.details["extended_statistic"] == "p99"


def test_fixture_raw_delivery_matches_envelope() -> None:
    (raw,) = run(fixture("sns-alarm-raw-delivery.json"), {"x-amz-sns-rawdelivery": "true"}).alerts
    (enveloped,) = run(fixture("sns-alarm.json")).alerts
    assert raw.fingerprint == enveloped.fingerprint
    assert raw.labels == enveloped.labels
    assert raw.starts_at == enveloped.starts_at


def test_raw_delivery_plain_text_is_an_event() -> None:
    outcome = run(b"disk almost full\nplease look", {"x-amz-sns-rawdelivery": "true", "content-type": "text/plain"})
    assert outcome.kind == EVENT
    assert outcome.note == "disk almost full"


def test_fixture_eventbridge_alarm_and_ok_share_fingerprint() -> None:
    (firing,) = run(fixture("eventbridge-alarm-state-change.json"), {}).alerts
    (resolved,) = run(fixture("eventbridge-alarm-state-change-ok.json"), {}).alerts
    (sns,) = run(fixture("sns-alarm.json")).alerts
    assert firing.status == FIRING
    assert resolved.status == RESOLVED
    assert firing.fingerprint == resolved.fingerprint == sns.fingerprint
    assert firing.labels == sns.labels
    assert resolved.starts_at == datetime.datetime(2024, 5, 14, 9, 20, 31, 892000, tzinfo=UTC)
    assert resolved.ends_at == datetime.datetime(2024, 5, 14, 10, 0, 31, 15000, tzinfo=UTC)


def test_other_eventbridge_event_is_unprocessable() -> None:
    document = json.loads(fixture("eventbridge-alarm-state-change.json"))
    document["detail-type"] = "EC2 Instance State-change Notification"
    with pytest.raises(Rejected) as caught:
        run(document, {})
    assert caught.value.status == 422
    assert "detail-type" in caught.value.reason


@pytest.mark.parametrize(
    ("message_type", "header_type", "status", "fragment"),
    [
        ("Bogus", None, 422, 'unsupported SNS message `Type` "Bogus"'),
        ("Notification", "SubscriptionConfirmation", 400, "disagrees with `Type`"),
    ],
)
def test_bad_sns_type(message_type: str, header_type: str | None, status: int, fragment: str) -> None:
    envelope = c20_envelope(alarm_message("ALARM", "OK"), message_type=message_type)
    headers = {"x-amz-sns-message-type": header_type} if header_type else {}
    with pytest.raises(Rejected) as caught:
        run(envelope, headers)
    assert caught.value.status == status
    assert fragment in caught.value.reason


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"NewStateValue": "BROKEN"}, '`Message.NewStateValue` must be ALARM, OK or INSUFFICIENT_DATA, not "BROKEN"'),
        ({"AlarmArn": None}, "`Message.AlarmArn` is missing"),
        ({"StateChangeTime": "soon"}, '`Message.StateChangeTime` is not an RFC 3339 timestamp: "soon"'),
        ({"Trigger": "x"}, "`Message.Trigger` must be a JSON object"),
    ],
)
def test_malformed_alarm_names_the_field(change: dict, fragment: str) -> None:
    message = {**json.loads(alarm_message("ALARM", "OK")), **change}
    with pytest.raises(Rejected) as caught:
        run(c20_envelope(json.dumps(message)))
    assert caught.value.status == 400
    assert fragment in caught.value.reason


def test_unrecognised_json_is_unprocessable() -> None:
    with pytest.raises(Rejected) as caught:
        run({"hello": "world"}, {})
    assert caught.value.status == 422


def test_body_that_is_not_json_is_rejected() -> None:
    with pytest.raises(Rejected) as caught:
        run(b"not json", {})
    assert caught.value.status == 400
