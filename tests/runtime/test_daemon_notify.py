"""The daemon as a child process notifying every channel kind through the fake SaaS and SMTP servers.

An alert opens an incident, and every channel is notified. An acknowledgement
through the API reaches PagerDuty and the Slack thread, and the resolution
closes the PagerDuty alert. A signed Slack slash command acknowledges another
incident. Each test ends by stopping the daemon with SIGTERM and expects exit
status 0.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.runtime.daemon_process import DaemonProcess, fixture_bytes
from tests.runtime.fakes import FakeSaaS, FakeSmtp

RULES = """
settings {
  incident_id_format "INC-{number}"
  daemon_url "https://irules.example.com"
  incident_url "https://irules.example.com"
  smtp "127.0.0.1:SMTP_PORT"
    from "irules@example.com"
    require_tls false
  alertmanager_version "0.25"
}

slack {
  token secret("SLACK_TOKEN")
  signing_secret secret("SLACK_SIGNING_SECRET")
}

receiver oncall {
  pagerduty key secret("PAGERDUTY_KEY")
  slack "#incidents"
  teams url secret("TEAMS_URL")
  sms "+15555550100"
  email "oncall@example.com"
  webhook url secret("WEBHOOK_URL")
}

route {
  receiver oncall
  group_by [alertname]
  group_wait 0s
  group_interval 1s
  repeat_interval 4h
}
"""

SIGNING_SECRET = "slack-signing-secret-for-tests"
WAIT_S = 20.0


def wait_for(check: Callable[[], bool], description: str) -> None:
    """Poll `check` until it returns True, and fail after WAIT_S seconds."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {description}")


@pytest.fixture
def daemon(tmp_path: Path, fake_saas: FakeSaaS, smtp_server: FakeSmtp):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.irules").write_text(RULES.replace("SMTP_PORT", str(smtp_server.port)), encoding="utf-8")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in {**fake_saas.secrets, "SLACK_SIGNING_SECRET": SIGNING_SECRET}.items():
        (secrets / name).write_text(value + "\n", encoding="utf-8")
    endpoints = fake_saas.endpoints
    process = DaemonProcess(
        rules,
        tmp_path / "state",
        secrets_dir=secrets,
        allow_unauthenticated=True,
        extra_environment={
            "IRULES_SLACK_API_URL": endpoints.slack_api,
            "IRULES_PAGERDUTY_EVENTS_URL": endpoints.pagerduty_events,
            "IRULES_TWILIO_API_URL": endpoints.twilio_api,
            "IRULES_SLACK_HOOKS_URL": endpoints.slack_hooks,
        },
    )
    with process:
        yield process


def pagerduty_actions(fake: FakeSaaS) -> list[str]:
    """Return the `event_action` of each PagerDuty request that the fake server accepted."""
    return [request.data["event_action"] for request in fake.requests(fake.pagerduty_path) if request.status == 202]


def signed(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Return the headers of a Slack request signed with SIGNING_SECRET at `timestamp` (default now)."""
    moment = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{moment}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": moment,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def test_every_channel_notified_through_lifecycle(daemon: DaemonProcess, fake_saas: FakeSaaS, smtp_server: FakeSmtp) -> None:
    """Every channel is notified of an incident, its acknowledgement and its resolution."""
    firing = fixture_bytes("grafana/firing.json")
    assert daemon.post("/hooks/grafana", firing).status_code == 202
    wait_for(lambda: pagerduty_actions(fake_saas) == ["trigger"], "the PagerDuty trigger")
    wait_for(lambda: len(smtp_server.messages) == 1, "the e-mail")
    wait_for(lambda: len(fake_saas.requests(fake_saas.twilio_messages_path)) == 1, "the SMS")
    wait_for(lambda: len(fake_saas.requests(fake_saas.teams_workflows_path)) == 1, "the Teams card")
    wait_for(lambda: len(fake_saas.requests(fake_saas.webhook_path)) == 1, "the webhook")
    wait_for(lambda: len(fake_saas.requests("/api/chat.postMessage")) == 1, "the Slack message")
    incident = daemon.incidents()[0]
    reference = incident["id"]

    trigger = fake_saas.requests(fake_saas.pagerduty_path)[0].data
    assert trigger["dedup_key"] == f"irules-{reference}"
    assert trigger["routing_key"] == fake_saas.secrets["PAGERDUTY_KEY"]
    assert len(trigger["payload"]["summary"]) <= 1024
    sms = fake_saas.requests(fake_saas.twilio_messages_path)[0].data
    assert sms["To"] == "+15555550100"
    assert reference in sms["Body"]
    assert smtp_server.messages[0].rcpt_tos == ["oncall@example.com"]
    post = fake_saas.requests("/api/chat.postMessage")[0].data
    assert post["channel"] == "#incidents"
    assert (
        next(element["value"] for block in post["blocks"] if block["type"] == "actions" for element in block["elements"])
        == reference
    )

    acknowledged = daemon.client.post(f"/api/v1/incidents/{reference}/ack", json={"actor": "alice"})
    assert acknowledged.status_code == 200
    wait_for(lambda: pagerduty_actions(fake_saas) == ["trigger", "acknowledge"], "the PagerDuty acknowledgement")
    wait_for(lambda: len(fake_saas.requests("/api/chat.postMessage")) == 2, "the Slack thread reply")
    root, reply = (request.data for request in fake_saas.requests("/api/chat.postMessage"))
    assert "thread_ts" not in root
    assert reply["thread_ts"]
    wait_for(lambda: len(fake_saas.requests("/api/chat.update")) >= 1, "the update of the first Slack message")

    document = json.loads(fixture_bytes("grafana/firing.json"))
    document["status"] = "resolved"
    for alert in document["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2024-05-14T09:51:00+02:00"
    assert daemon.post("/hooks/grafana", json.dumps(document).encode()).status_code == 202
    wait_for(lambda: pagerduty_actions(fake_saas) == ["trigger", "acknowledge", "resolve"], "the PagerDuty resolution")
    dedup_keys = {request.data["dedup_key"] for request in fake_saas.requests(fake_saas.pagerduty_path)}
    assert dedup_keys == {f"irules-{reference}"}

    rows = daemon.client.get("/api/v1/notifications").json()["notifications"]
    wait_for(
        lambda: {row["status"] for row in daemon.client.get("/api/v1/notifications").json()["notifications"]} == {"delivered"},
        "every notification delivered",
    )
    assert {row["channel"] for row in rows} == {"pagerduty", "slack", "teams", "sms", "email", "webhook"}
    timeline = daemon.incident(reference)["timeline"]
    sent = [entry for entry in timeline if entry["kind"] == "notification.sent"]
    assert len(sent) == len(rows)
    metrics = daemon.client.get("/metrics").text
    assert 'irules_notifications_total{channel="pagerduty",outcome="delivered"} 3.0' in metrics
    # No secret value appears in the daemon log or in the notifications that the API lists.
    log = daemon.log_text()
    for value in (fake_saas.secrets["PAGERDUTY_KEY"], fake_saas.secrets["SLACK_TOKEN"], fake_saas.secrets["TWILIO_AUTH_TOKEN"]):
        assert value not in log
        assert value not in json.dumps(rows)


def test_slack_command_acknowledges_incident(daemon: DaemonProcess, fake_saas: FakeSaaS) -> None:
    """A signed slash command acknowledges an incident, once, and its PagerDuty alert.

    Forged and stale commands are rejected.
    """
    assert daemon.post("/hooks/grafana", fixture_bytes("grafana/firing.json")).status_code == 202
    wait_for(lambda: pagerduty_actions(fake_saas) == ["trigger"], "the PagerDuty trigger")
    reference = daemon.incidents()[0]["id"]
    body = (
        "token=ignored&team_id=T00000000&channel_id=C00000000&user_id=U00000001&user_name=zoe"
        f"&command=%2Fincident&text=ack+{reference}&response_url="
        + fake_saas.slack_response_url.replace(":", "%3A").replace("/", "%2F")
        + "&trigger_id=1.2.3"
    ).encode()

    forged = daemon.post("/slack/commands", body, {**signed(body), "X-Slack-Signature": "v0=" + "0" * 64})
    assert forged.status_code == 401
    stale = daemon.post("/slack/commands", body, signed(body, timestamp=int(time.time()) - 301))
    assert stale.status_code == 401
    assert daemon.incident(reference)["acknowledged_by"] is None

    answered = daemon.post("/slack/commands", body, signed(body))
    assert answered.status_code == 200
    wait_for(lambda: daemon.incident(reference)["acknowledged_by"] is not None, "the acknowledgement from Slack")
    assert daemon.incident(reference)["acknowledged_by"].startswith("slack:U00000001")
    wait_for(lambda: pagerduty_actions(fake_saas) == ["trigger", "acknowledge"], "the PagerDuty acknowledgement")
    wait_for(lambda: len(fake_saas.requests(fake_saas.slack_response_path)) == 1, "the reply to the command")
    # Slack does not retry commands, but a proxy might, so the same request again is acted on only once.
    again = daemon.post("/slack/commands", body, signed(body))
    assert again.status_code == 200
    time.sleep(0.5)
    assert len(fake_saas.requests(fake_saas.slack_response_path)) == 1
    assert pagerduty_actions(fake_saas) == ["trigger", "acknowledge"]
