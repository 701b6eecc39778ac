"""Channel senders against local fakes of Slack, PagerDuty, Twilio, Teams, webhooks and SMTP."""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import json
import socket
import sys
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
import pytest

from compiler import ir
from runtime.notify.channels import endpoint_key, redact_url, send
from runtime.notify.channels._common import parse_retry_after
from runtime.notify.channels.pagerduty import MAX_EVENT_BYTES
from runtime.notify.channels.sms import truncate_utf16, utf16_units
from runtime.notify.model import DELIVERED, FAILED, RETRY, Delivery, Endpoints, Outbound
from tests.runtime import fakes
from tests.runtime.fakes import (
    SLACK_TOKEN,
    SMTP_PASSWORD,
    SMTP_USERNAME,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    FakeSaaS,
    FakeSmtp,
    self_signed_tls,
)

pytestmark = pytest.mark.anyio

fake_saas = fakes.fake_saas
smtp_server = fakes.smtp_server

FIXTURES = Path(__file__).parent / "fixtures"
SETTINGS = ir.Settings()
SLACK_SECRETS = {"token": "SLACK_TOKEN"}
TWILIO_SECRETS = {"account_sid": "TWILIO_ACCOUNT_SID", "auth_token": "TWILIO_AUTH_TOKEN", "from": "TWILIO_FROM"}


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def fixture_http(name: str) -> tuple[int, dict[str, str], bytes]:
    """Return the status, headers and body of a `.http` fixture (a status line, headers, a blank line, the body)."""
    head, _, body = (FIXTURES / name).read_bytes().replace(b"\r\n", b"\n").partition(b"\n\n")
    status_line, *header_lines = head.decode().split("\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body.strip()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # The daemon runs on asyncio; the trio installed beside anyio is too old for it.
    return "asyncio"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as opened:
        yield opened


async def deliver(
    outbound: Outbound,
    client: httpx.AsyncClient,
    fake: FakeSaaS | None = None,
    *,
    secrets: dict[str, str] | None = None,
    endpoints: Endpoints | None = None,
    settings: ir.Settings = SETTINGS,
) -> Delivery:
    """Send `outbound` with the fake's secrets and endpoints, and check that the detail shows no secret."""
    known = dict(fake.secrets if fake else {}) | (secrets or {})
    endpoints = endpoints or (fake.endpoints if fake else Endpoints(timeout_s=2.0))
    delivery = await send(outbound, secrets=known.get, client=client, endpoints=endpoints, settings=settings)
    for name, value in known.items():
        assert value not in delivery.detail, f"secret {name} appears in the detail"
    assert "TOKEN" not in delivery.detail
    return delivery


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- Slack Web API ----------------------------------------------------------------------


async def test_slack_post_has_fixture_shape(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    expected = fixture_json("slack/incident-message.json")
    payload = {"text": expected["text"], "blocks": expected["blocks"]}

    delivery = await deliver(Outbound("slack", payload, target="C00000000", secrets=SLACK_SECRETS), client, fake_saas)

    [request] = fake_saas.requests("/api/chat.postMessage")
    assert request.data == expected
    assert request.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert delivery == Delivery(DELIVERED, status=200, reference={"channel": "C00000000", "ts": "1715678467.000001"})


async def test_slack_channel_from_secret(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    outbound = Outbound("slack", {"text": "x"}, secrets={**SLACK_SECRETS, "target": "SLACK_CHANNEL"})

    delivery = await deliver(outbound, client, fake_saas, secrets={"SLACK_CHANNEL": "#private-incidents"})

    assert fake_saas.requests()[0].data["channel"] == "#private-incidents"
    assert delivery.reference["channel"] == fake_saas.slack_channel_id("#private-incidents")


async def test_slack_reference_has_channel_id(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    outbound = Outbound("slack", {"text": "disk full"}, target="#alerts", secrets=SLACK_SECRETS)

    delivery = await deliver(outbound, client, fake_saas)

    assert delivery.reference == {"channel": fake_saas.slack_channel_id("#alerts"), "ts": "1715678467.000001"}
    assert fake_saas.requests()[0].data["channel"] == "#alerts"


async def test_slack_threaded_reply_updates_root(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    opened = await deliver(
        Outbound("slack", {"text": "INC-1 opened"}, target="#alerts", secrets=SLACK_SECRETS), client, fake_saas
    )
    update = {"text": "INC-1 acknowledged by alice", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "acked"}}]}
    reply = Outbound(
        "slack",
        {"text": "alice acknowledged", "root_update": update},
        target="#alerts",
        secrets=SLACK_SECRETS,
        thread=opened.reference,
    )

    delivery = await deliver(reply, client, fake_saas)

    channel, root_ts = opened.reference["channel"], opened.reference["ts"]
    [_, posted] = fake_saas.requests("/api/chat.postMessage")
    assert posted.data["channel"] == channel
    assert posted.data["thread_ts"] == root_ts
    [updated] = fake_saas.requests("/api/chat.update")
    assert updated.data == {"channel": channel, "ts": root_ts, **update}
    assert fake_saas.slack_messages[(channel, root_ts)]["text"] == "INC-1 acknowledged by alice"
    assert delivery == Delivery(DELIVERED, status=200, reference={"channel": channel, "ts": root_ts})


async def test_slack_reply_without_root_update_skips_update(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    opened = await deliver(Outbound("slack", {"text": "opened"}, target="#alerts", secrets=SLACK_SECRETS), client, fake_saas)

    await deliver(
        Outbound("slack", {"text": "note"}, target="#alerts", secrets=SLACK_SECRETS, thread=opened.reference), client, fake_saas
    )

    assert fake_saas.requests("/api/chat.update") == []


async def test_slack_failed_root_update_keeps_delivery(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    opened = await deliver(Outbound("slack", {"text": "opened"}, target="#alerts", secrets=SLACK_SECRETS), client, fake_saas)
    fake_saas.fail_next("/api/chat.update", status=200, body={"ok": False, "error": "cant_update_message"})
    reply = Outbound(
        "slack", {"text": "resolved", "root_update": {"text": "INC-1 resolved"}}, secrets=SLACK_SECRETS, thread=opened.reference
    )

    delivery = await deliver(reply, client, fake_saas)

    assert delivery.outcome == DELIVERED
    assert delivery.detail == "thread root not updated: slack chat.update failed: cant_update_message"
    assert delivery.reference == opened.reference


async def test_slack_logical_error_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next("/api/chat.postMessage", status=200, body=fixture_json("slack/chat-postmessage-error.json"))

    delivery = await deliver(Outbound("slack", {"text": "x"}, target="#alerts", secrets=SLACK_SECRETS), client, fake_saas)

    assert delivery == Delivery(FAILED, "slack chat.postMessage failed: not_in_channel", status=200)


async def test_slack_429_retries_after_header(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    status, headers, body = fixture_http("slack/chat-postmessage-429.http")
    fake_saas.fail_next("/api/chat.postMessage", status=status, headers=headers, body=body)

    delivery = await deliver(Outbound("slack", {"text": "x"}, target="#alerts", secrets=SLACK_SECRETS), client, fake_saas)

    assert delivery == Delivery(RETRY, "slack chat.postMessage returned HTTP 429: ratelimited", status=429, retry_after_s=30.0)


async def test_slack_ratelimited_error_retries(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next("/api/chat.postMessage", status=200, body={"ok": False, "error": "ratelimited"})

    delivery = await deliver(Outbound("slack", {"text": "x"}, target="#alerts", secrets=SLACK_SECRETS), client, fake_saas)

    assert delivery == Delivery(RETRY, "slack chat.postMessage failed: ratelimited", status=200)


async def test_slack_500_retries(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next("/api/chat.postMessage", status=503, body="upstream unavailable")

    delivery = await deliver(Outbound("slack", {"text": "x"}, target="#alerts", secrets=SLACK_SECRETS), client, fake_saas)

    assert delivery == Delivery(RETRY, "slack chat.postMessage returned HTTP 503", status=503)


async def test_slack_wrong_token_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    outbound = Outbound("slack", {"text": "x"}, target="#alerts", secrets={"token": "OTHER_SLACK_BOT"})

    delivery = await deliver(outbound, client, fake_saas, secrets={"OTHER_SLACK_BOT": "xoxb-wrong-TOKEN-value"})

    assert delivery == Delivery(FAILED, "slack chat.postMessage failed: invalid_auth", status=200)


async def test_slack_missing_token_fails_without_request(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    outbound = Outbound("slack", {"text": "x"}, target="#alerts", secrets={"token": "UNSET_SLACK_BOT"})

    delivery = await deliver(outbound, client, fake_saas)

    assert delivery == Delivery(RETRY, "secret UNSET_SLACK_BOT is not set")  # retried: the secret may be added meanwhile
    assert fake_saas.requests() == []


async def test_slack_body_not_json_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next("/api/chat.postMessage", status=200, body="<html>login</html>")

    delivery = await deliver(Outbound("slack", {"text": "x"}, target="#alerts", secrets=SLACK_SECRETS), client, fake_saas)

    assert delivery == Delivery(FAILED, "slack chat.postMessage returned a body that is not JSON: <html>login</html>", status=200)


# --- Slack incoming webhooks -------------------------------------------------------------


async def test_slack_webhook_posts_text_and_blocks(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*disk full*"}}]
    outbound = Outbound("slack", {"text": "disk full", "blocks": blocks}, target="#alerts", secrets={"url": "SLACK_WEBHOOK_URL"})

    delivery = await deliver(outbound, client, fake_saas)

    [request] = fake_saas.requests(fake_saas.slack_webhook_path)
    assert request.data == {"text": "disk full", "blocks": blocks}
    assert delivery == Delivery(DELIVERED, status=200)


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "invalid_payload"), (403, "action_prohibited"), (404, "channel_not_found"), (410, "channel_is_archived")],
)
async def test_slack_webhook_error_codes_fail(fake_saas: FakeSaaS, client: httpx.AsyncClient, status: int, code: str):
    fake_saas.fail_next(fake_saas.slack_webhook_path, status=status, body=code)
    outbound = Outbound("slack", {"text": "x"}, secrets={"url": "SLACK_WEBHOOK_URL"})

    delivery = await deliver(outbound, client, fake_saas)

    assert delivery == Delivery(FAILED, f"slack webhook returned HTTP {status}: {code}", status=status)


async def test_slack_webhook_unknown_hook_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    outbound = Outbound("slack", {"text": "x"}, secrets={"url": "OLD_HOOK"})

    delivery = await deliver(outbound, client, fake_saas, secrets={"OLD_HOOK": fake_saas.url + "/hooks/services/T0/B0/TOKEN-old"})

    assert delivery == Delivery(FAILED, "slack webhook returned HTTP 404: no_service", status=404)


async def test_slack_webhook_500_retries(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next(fake_saas.slack_webhook_path, status=500, body="")

    delivery = await deliver(Outbound("slack", {"text": "x"}, secrets={"url": "SLACK_WEBHOOK_URL"}), client, fake_saas)

    assert delivery == Delivery(RETRY, "slack webhook returned HTTP 500", status=500)


async def test_slack_falls_back_to_settings_api_url(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    settings = ir.Settings(slack_api_url=ir.SecretRef(secret="SLACK_WEBHOOK_URL"))

    delivery = await deliver(Outbound("slack", {"text": "x"}, target="#alerts"), client, fake_saas, settings=settings)

    assert delivery.outcome == DELIVERED
    assert len(fake_saas.requests(fake_saas.slack_webhook_path)) == 1


async def test_slack_without_any_address_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    delivery = await deliver(Outbound("slack", {"text": "x"}, target="#alerts"), client, fake_saas)

    assert delivery == Delivery(FAILED, "slack channel has no token, url or settings slack_api_url")


# --- PagerDuty ------------------------------------------------------------------------------


def pagerduty(payload: dict[str, Any]) -> Outbound:
    return Outbound("pagerduty", payload, secrets={"key": "PAGERDUTY_KEY"})


def without_routing_key(event: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in event.items() if name != "routing_key"}


async def test_pagerduty_trigger_has_fixture_shape(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    expected = fixture_json("pagerduty/trigger.json")

    delivery = await deliver(pagerduty(without_routing_key(expected)), client, fake_saas)

    [request] = fake_saas.requests("/v2/enqueue")
    assert request.data == expected
    assert request.headers["content-type"] == "application/json"
    assert delivery == Delivery(DELIVERED, status=202, reference={"dedup_key": expected["dedup_key"]})


@pytest.mark.parametrize("name", ["acknowledge", "resolve"])
async def test_pagerduty_follow_up_has_fixture_shape(fake_saas: FakeSaaS, client: httpx.AsyncClient, name: str):
    expected = fixture_json(f"pagerduty/{name}.json")

    delivery = await deliver(pagerduty(without_routing_key(expected)), client, fake_saas)

    assert fake_saas.requests("/v2/enqueue")[0].data == expected
    assert delivery.reference == {"dedup_key": expected["dedup_key"]}


async def test_pagerduty_generated_dedup_key_is_kept(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    expected = fixture_json("pagerduty/trigger-no-dedup-unicode-max-summary.json")

    delivery = await deliver(pagerduty(without_routing_key(expected)), client, fake_saas)

    [request] = fake_saas.requests("/v2/enqueue")
    assert request.data == expected
    assert len(request.data["payload"]["summary"]) == 1024
    assert delivery.outcome == DELIVERED
    assert len(delivery.reference["dedup_key"]) == 32


async def test_pagerduty_long_summary_is_cut(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    summary = "ディスク残量 ↑ db-1 " * 100
    event = {"event_action": "trigger", "payload": {"summary": summary, "source": "db-1", "severity": "warning"}}

    delivery = await deliver(pagerduty(event), client, fake_saas)

    sent = fake_saas.requests("/v2/enqueue")[0].data["payload"]["summary"]
    assert len(summary) == 1400
    assert sent == summary[:1023] + "…"
    assert delivery.outcome == DELIVERED


async def test_pagerduty_oversized_custom_details_are_dropped(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    details = {"log": "é" * 300_000}
    event = {
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "db-1", "severity": "info", "custom_details": details},
    }

    delivery = await deliver(pagerduty(event), client, fake_saas)

    [request] = fake_saas.requests("/v2/enqueue")
    assert "custom_details" not in request.data["payload"]
    assert len(request.body) <= MAX_EVENT_BYTES
    assert delivery.outcome == DELIVERED
    # 300,000 two-byte characters, and 163 bytes for the rest of the event.
    assert delivery.detail == "custom_details dropped because the event was 600,163 bytes"


async def test_pagerduty_event_too_large_without_details_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    event = {"event_action": "trigger", "payload": {"summary": "s", "source": "x" * 600_000, "severity": "info"}}

    delivery = await deliver(pagerduty(event), client, fake_saas)

    # 600,000 bytes of source, and 131 bytes for the rest of the event.
    assert delivery == Delivery(FAILED, "pagerduty event is 600,131 bytes without custom_details, more than the 512,000 allowed")
    assert fake_saas.requests() == []


async def test_pagerduty_long_dedup_key_is_hashed(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    group_key = "{}/{team=payments}:" + "x" * 300
    event = {"event_action": "resolve", "dedup_key": group_key}

    first = await deliver(pagerduty(event), client, fake_saas)
    second = await deliver(pagerduty(event), client, fake_saas)

    sent = [request.data["dedup_key"] for request in fake_saas.requests("/v2/enqueue")]
    assert len(sent[0]) == 64
    assert sent[0] == sent[1]
    assert first.reference == second.reference == {"dedup_key": sent[0]}


async def test_pagerduty_invalid_event_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    delivery = await deliver(pagerduty({"event_action": "acknowledge"}), client, fake_saas)

    assert delivery == Delivery(
        FAILED, "pagerduty returned HTTP 400: Event object is invalid ('dedup_key' is missing or blank)", status=400
    )


async def test_pagerduty_short_routing_key_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    outbound = Outbound("pagerduty", {"event_action": "resolve", "dedup_key": "k"}, secrets={"key": "SHORT_KEY"})

    delivery = await deliver(outbound, client, fake_saas, secrets={"SHORT_KEY": "short-TOKEN"})

    assert delivery.outcome == FAILED
    assert (
        delivery.detail
        == "pagerduty returned HTTP 400: Event object is invalid (Length of 'routing_key' is incorrect (should be 32 characters))"
    )


async def test_pagerduty_400_without_json_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next("/v2/enqueue", status=400, body="Bad Request")

    delivery = await deliver(pagerduty({"event_action": "resolve", "dedup_key": "k"}), client, fake_saas)

    assert delivery == Delivery(FAILED, "pagerduty returned HTTP 400: Bad Request", status=400)


async def test_pagerduty_400_body_is_quoted_short(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next("/v2/enqueue", status=400, body="<p>" + "error " * 2000 + "</p>")

    delivery = await deliver(pagerduty({"event_action": "resolve", "dedup_key": "k"}), client, fake_saas)

    assert delivery.outcome == FAILED
    assert len(delivery.detail) == len("pagerduty returned HTTP 400: ") + 200
    assert delivery.detail.endswith("…")


async def test_pagerduty_429_retries_with_retry_after(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next("/v2/enqueue", status=429, headers={"Retry-After": "2"}, times=3)
    event = {"event_action": "resolve", "dedup_key": "k"}

    deliveries = [await deliver(pagerduty(event), client, fake_saas) for _ in range(4)]

    assert deliveries[:3] == [Delivery(RETRY, "pagerduty returned HTTP 429", status=429, retry_after_s=2.0)] * 3
    assert deliveries[3] == Delivery(DELIVERED, status=202, reference={"dedup_key": "k"})
    assert [request.status for request in fake_saas.requests()] == [429, 429, 429, 202]


async def test_pagerduty_429_with_http_date_retries(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next("/v2/enqueue", status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})

    delivery = await deliver(pagerduty({"event_action": "resolve", "dedup_key": "k"}), client, fake_saas)

    # A date in the past means no wait at all.
    assert delivery == Delivery(RETRY, "pagerduty returned HTTP 429", status=429, retry_after_s=0.0)


async def test_pagerduty_rate_limit_per_key(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.pagerduty_limit_per_minute = 3
    event = {"event_action": "resolve", "dedup_key": "k"}

    deliveries = [await deliver(pagerduty(event), client, fake_saas) for _ in range(4)]

    assert [delivery.outcome for delivery in deliveries] == [DELIVERED, DELIVERED, DELIVERED, RETRY]
    assert deliveries[3].status == 429
    assert deliveries[3].retry_after_s is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_pagerduty_5xx_retries(fake_saas: FakeSaaS, client: httpx.AsyncClient, status: int):
    fake_saas.fail_next("/v2/enqueue", status=status)

    delivery = await deliver(pagerduty({"event_action": "resolve", "dedup_key": "k"}), client, fake_saas)

    assert delivery == Delivery(RETRY, f"pagerduty returned HTTP {status}", status=status)


async def test_pagerduty_key_secret_missing_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    outbound = Outbound("pagerduty", {"event_action": "resolve", "dedup_key": "k"}, secrets={"key": "INFRA_PAGERDUTY_KEY"})

    delivery = await deliver(outbound, client, fake_saas)

    assert delivery == Delivery(RETRY, "secret INFRA_PAGERDUTY_KEY is not set")  # retried: the secret may be added meanwhile


async def test_pagerduty_without_key_role_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    delivery = await deliver(Outbound("pagerduty", {"event_action": "resolve", "dedup_key": "k"}), client, fake_saas)

    assert delivery == Delivery(FAILED, "pagerduty channel has no key secret")


# --- SMS through Twilio --------------------------------------------------------------------------


def sms(text: str, to: str = "+15555550100", secrets: dict[str, str] = TWILIO_SECRETS) -> Outbound:
    return Outbound("sms", {"Body": text}, target=to, secrets=secrets)


async def test_sms_request_has_fixture_bytes(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    expected = (FIXTURES / "twilio/send.form").read_bytes()
    text = dict(parse_qsl(expected.decode()))["Body"]

    delivery = await deliver(sms(text), client, fake_saas)

    [request] = fake_saas.requests(fake_saas.twilio_messages_path)
    assert request.body == expected
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    credentials = base64.b64encode(f"{TWILIO_ACCOUNT_SID}:{TWILIO_AUTH_TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {credentials}"
    assert delivery == Delivery(DELIVERED, status=201, reference={"sid": "SM00000000000000000000000000000001"})


async def test_sms_messaging_service_replaces_from(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    expected = dict(parse_qsl((FIXTURES / "twilio/send-messaging-service.form").read_text()))
    secrets = {**TWILIO_SECRETS, "messaging_service_sid": "TWILIO_MESSAGING_SERVICE_SID"}
    del secrets["from"]

    delivery = await deliver(sms(expected["Body"], secrets=secrets), client, fake_saas)

    [request] = fake_saas.requests(fake_saas.twilio_messages_path)
    assert request.data == {name: expected[name] for name in ("To", "MessagingServiceSid", "Body")}
    assert delivery.outcome == DELIVERED


async def test_sms_body_is_cut_to_1600_utf16_units(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    text = "🔥 disk full " * 200

    delivery = await deliver(sms(text), client, fake_saas)

    sent = fake_saas.requests(fake_saas.twilio_messages_path)[0].data["Body"]
    assert utf16_units(text) == 2600
    assert utf16_units(sent) == 1600
    # 123 repeats of 13 code units (12 characters) and the `…` make 1,600 units.
    assert sent == text[: 123 * 12] + "…"
    assert delivery.outcome == DELIVERED


async def test_sms_21617_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next(fake_saas.twilio_messages_path, status=400, body=fixture_json("twilio/error-400-21617.json"))

    delivery = await deliver(sms("x"), client, fake_saas)

    detail = "twilio returned HTTP 400: error 21617: The concatenated message body exceeds the 1600 character limit."
    assert delivery == Delivery(FAILED, detail, status=400)


async def test_sms_invalid_number_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    delivery = await deliver(sms("x", to="+1555"), client, fake_saas)

    assert delivery == Delivery(
        FAILED, "twilio returned HTTP 400: error 21211: The 'To' number +1555 is not a valid phone number.", status=400
    )


async def test_sms_wrong_auth_token_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    secrets = {**TWILIO_SECRETS, "auth_token": "OLD_TWILIO_AUTH"}

    delivery = await deliver(sms("x", secrets=secrets), client, fake_saas, secrets={"OLD_TWILIO_AUTH": "old-TOKEN-value"})

    assert delivery == Delivery(FAILED, "twilio returned HTTP 401: error 20003: Authenticate", status=401)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_sms_429_and_5xx_retry(fake_saas: FakeSaaS, client: httpx.AsyncClient, status: int):
    fake_saas.fail_next(fake_saas.twilio_messages_path, status=status, headers={"Retry-After": "7"})

    delivery = await deliver(sms("x"), client, fake_saas)

    assert delivery == Delivery(RETRY, f"twilio returned HTTP {status}", status=status, retry_after_s=7.0)


async def test_sms_without_sender_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    secrets = {"account_sid": "TWILIO_ACCOUNT_SID", "auth_token": "TWILIO_AUTH_TOKEN"}

    delivery = await deliver(sms("x", secrets=secrets), client, fake_saas)

    assert delivery == Delivery(FAILED, "sms channel has neither a from nor a messaging_service_sid secret")


async def test_sms_number_and_text_alias(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    outbound = Outbound("sms", {"text": "disk full"}, secrets={**TWILIO_SECRETS, "target": "ONCALL_PHONE"})

    delivery = await deliver(outbound, client, fake_saas, secrets={"ONCALL_PHONE": "+15555550123"})

    [request] = fake_saas.requests(fake_saas.twilio_messages_path)
    assert request.data["To"] == "+15555550123"
    assert request.data["Body"] == "disk full"
    assert delivery.outcome == DELIVERED


def test_truncate_utf16_keeps_text_at_limit():
    assert truncate_utf16("a" * 1600, 1600) == "a" * 1600
    assert truncate_utf16("💾" * 800, 1600) == "💾" * 800


def test_truncate_utf16_never_splits_emoji():
    assert truncate_utf16("a" + "💾" * 5, 6) == "a💾💾…"
    assert truncate_utf16("💾" * 5, 6) == "💾💾…"


# --- Teams and generic webhooks ----------------------------------------------------------------


async def test_teams_workflows_accepts_card(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    card = fixture_json("teams/adaptive-card.json")

    delivery = await deliver(Outbound("teams", card, secrets={"url": "TEAMS_URL"}), client, fake_saas)

    [request] = fake_saas.requests(fake_saas.teams_workflows_path)
    assert request.data == card
    assert delivery == Delivery(DELIVERED, status=202)


async def test_teams_legacy_answer_1_is_delivered(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    card = fixture_json("teams/adaptive-card-resolved.json")

    delivery = await deliver(Outbound("teams", card, secrets={"url": "TEAMS_LEGACY_URL"}), client, fake_saas)

    assert delivery == Delivery(DELIVERED, status=200)


async def test_teams_throttling_in_body_retries(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next(fake_saas.teams_legacy_path, status=200, body="Microsoft Teams endpoint returned HTTP error 429")

    delivery = await deliver(Outbound("teams", {"type": "message"}, secrets={"url": "TEAMS_LEGACY_URL"}), client, fake_saas)

    assert delivery == Delivery(RETRY, "teams is throttling: Microsoft Teams endpoint returned HTTP error 429", status=200)


async def test_teams_bad_payload_fails(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next(fake_saas.teams_workflows_path, status=400, body="Bad payload received by generic incoming webhook.")

    delivery = await deliver(Outbound("teams", {}, url=fake_saas.teams_workflows_url), client, fake_saas)

    assert delivery == Delivery(FAILED, "teams returned HTTP 400: Bad payload received by generic incoming webhook.", status=400)


async def test_webhook_posts_payload(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    payload = {"incident": "INC-1", "status": "opened", "labels": {"service": "checkout"}}

    delivery = await deliver(Outbound("webhook", payload, url=fake_saas.webhook_url), client, fake_saas)

    [request] = fake_saas.requests(fake_saas.webhook_path)
    assert request.data == payload
    assert request.headers["content-type"] == "application/json"
    assert delivery == Delivery(DELIVERED, status=200)


@pytest.mark.parametrize(
    ("status", "outcome"), [(400, FAILED), (401, FAILED), (404, FAILED), (408, RETRY), (429, RETRY), (502, RETRY)]
)
async def test_webhook_status_classification(fake_saas: FakeSaaS, client: httpx.AsyncClient, status: int, outcome: str):
    fake_saas.fail_next(fake_saas.webhook_path, status=status)

    delivery = await deliver(Outbound("webhook", {}, url=fake_saas.webhook_url), client, fake_saas)

    assert delivery == Delivery(outcome, f"webhook returned HTTP {status}", status=status)


async def test_webhook_redirect_is_not_followed(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next(fake_saas.webhook_path, status=302, headers={"Location": "http://127.0.0.1:1/elsewhere"})

    delivery = await deliver(Outbound("webhook", {}, url=fake_saas.webhook_url), client, fake_saas)

    assert delivery == Delivery(FAILED, "webhook returned HTTP 302 (redirects are not followed)", status=302)
    assert len(fake_saas.requests()) == 1


async def test_webhook_timeout_retries(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.delay_next(fake_saas.webhook_path, 5.0)
    endpoints = dataclasses.replace(fake_saas.endpoints, timeout_s=0.1)

    delivery = await deliver(Outbound("webhook", {}, url=fake_saas.webhook_url), client, fake_saas, endpoints=endpoints)

    assert delivery == Delivery(RETRY, "request to 127.0.0.1 timed out after 0.1 s")


async def test_webhook_connection_refused_retries(client: httpx.AsyncClient):
    outbound = Outbound("webhook", {}, url=f"http://127.0.0.1:{closed_port()}/hook")

    delivery = await deliver(outbound, client)

    assert delivery == Delivery(RETRY, "connection to 127.0.0.1 failed (ConnectError)")


async def test_webhook_echoed_secret_url_is_scrubbed(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next(fake_saas.webhook_path, status=400, body=f"no route for {fake_saas.webhook_url}")

    delivery = await deliver(Outbound("webhook", {}, secrets={"url": "WEBHOOK_URL"}), client, fake_saas)

    assert delivery == Delivery(FAILED, "webhook returned HTTP 400: no route for [secret]", status=400)


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("ftp://files.example.com/TOKEN/drop", "invalid URL ftp://files.example.com/…: not an absolute http or https URL"),
        ("hooks/TOKEN", "invalid URL: not an absolute http or https URL"),
        ("http://127.0.0.1:99999/hook", "invalid URL (Port out of range 0-65535)"),
        ("http://[::1/hook", "invalid URL (Invalid IPv6 URL)"),
        ("http://127.0.0.1:0/hook", "invalid URL http://127.0.0.1:0/…: port 0"),
    ],
)
async def test_webhook_invalid_url_fails(client: httpx.AsyncClient, url: str, detail: str):
    delivery = await deliver(Outbound("webhook", {}, url=url), client)

    assert delivery == Delivery(FAILED, detail)


async def test_webhook_without_url_fails(client: httpx.AsyncClient):
    delivery = await deliver(Outbound("webhook", {}), client)

    assert delivery == Delivery(FAILED, "webhook channel has no url")


# --- e-mail ------------------------------------------------------------------------------------


def mail(subject: str = "[FIRING] disk full", to: str = "ops@example.com", **payload: Any) -> Outbound:
    return Outbound("email", {"subject": subject, "text": "Disk usage is 97%.", **payload}, target=to)


async def test_email_sends_text_and_html(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    outbound = mail(to="ops@example.com, Oncall <oncall@example.com>", html="<p>Disk usage is <b>97%</b>.</p>")

    delivery = await deliver(outbound, client, settings=smtp_server.settings())

    [received] = smtp_server.messages
    assert received.mail_from == "irules@example.com"
    assert received.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    message = received.message
    assert message["Subject"] == "[FIRING] disk full"
    assert message["From"] == "irules@example.com"
    assert message["To"] == "ops@example.com, oncall@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_body(("plain",)).get_content() == "Disk usage is 97%.\n"
    assert message.get_body(("html",)).get_content() == "<p>Disk usage is <b>97%</b>.</p>\n"
    assert delivery == Delivery(DELIVERED, reference={"message_id": message["Message-ID"]})


async def test_email_subject_cannot_inject_headers(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    outbound = mail(subject="Disk full\r\nBcc: victim@example.com\nX-Injected: 1\u2028Cc: other@example.com")

    delivery = await deliver(outbound, client, settings=smtp_server.settings())

    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ops@example.com"]
    assert received.message["Subject"] == "Disk full Bcc: victim@example.com X-Injected: 1 Cc: other@example.com"
    assert received.message["Bcc"] is None
    assert received.message["X-Injected"] is None
    assert received.message["Cc"] is None
    assert delivery.outcome == DELIVERED


async def test_email_non_ascii_subject_is_encoded(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    await deliver(mail(subject="ディスク残量 低下 💾"), client, settings=smtp_server.settings())

    [received] = smtp_server.messages
    assert received.message["Subject"] == "ディスク残量 低下 💾"
    assert b"=?utf-8?" in received.data


async def test_email_reply_threads_under_first_message(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    first = await deliver(mail(), client, settings=smtp_server.settings())

    await deliver(dataclasses.replace(mail(), thread=first.reference), client, settings=smtp_server.settings())

    reply = smtp_server.messages[1].message
    assert reply["In-Reply-To"] == first.reference["message_id"]
    assert reply["References"] == first.reference["message_id"]


async def test_email_recipients_from_secret(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    outbound = Outbound("email", {"subject": "s", "text": "t"}, secrets={"target": "ONCALL_MAIL"})

    delivery = await deliver(outbound, client, secrets={"ONCALL_MAIL": "oncall@example.com"}, settings=smtp_server.settings())

    assert smtp_server.messages[0].rcpt_tos == ["oncall@example.com"]
    assert delivery.outcome == DELIVERED


async def test_email_invalid_secret_recipient_is_scrubbed(client: httpx.AsyncClient):
    outbound = Outbound("email", {"subject": "s", "text": "t"}, secrets={"target": "ONCALL_MAIL"})
    settings = ir.Settings(smtp=ir.Smtp(smarthost="127.0.0.1:25", sender="irules@example.com"))

    delivery = await deliver(outbound, client, secrets={"ONCALL_MAIL": "private-list"}, settings=settings)

    assert delivery == Delivery(FAILED, "email channel has no valid recipients: '[secret]'")


async def test_email_4xx_retries(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    smtp_server.fail_next("DATA", "451 4.3.0 Mail server temporarily rejected message")

    delivery = await deliver(mail(), client, settings=smtp_server.settings())

    assert delivery == Delivery(RETRY, "smtp server replied 451 4.3.0 Mail server temporarily rejected message")


async def test_email_5xx_fails(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    smtp_server.fail_next("DATA", "554 5.7.1 Message rejected as spam")

    delivery = await deliver(mail(), client, settings=smtp_server.settings())

    assert delivery == Delivery(FAILED, "smtp server replied 554 5.7.1 Message rejected as spam")


async def test_email_every_recipient_refused_fails(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    smtp_server.refused_recipients["ops@example.com"] = "550 5.1.1 No such user"

    delivery = await deliver(mail(), client, settings=smtp_server.settings())

    assert delivery == Delivery(FAILED, "smtp server refused every recipient: ops@example.com (550 5.1.1 No such user)")
    assert smtp_server.messages == []


async def test_email_recipient_greylisted_retries(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    smtp_server.fail_next("RCPT", "450 4.2.0 Greylisted, try again")

    delivery = await deliver(mail(), client, settings=smtp_server.settings())

    assert delivery == Delivery(RETRY, "smtp server refused every recipient: ops@example.com (450 4.2.0 Greylisted, try again)")


async def test_email_some_recipients_refused_is_delivered(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    smtp_server.refused_recipients["gone@example.com"] = "550 5.1.1 No such user"

    delivery = await deliver(mail(to="ops@example.com, gone@example.com"), client, settings=smtp_server.settings())

    assert delivery.outcome == DELIVERED
    assert delivery.detail == "smtp server refused gone@example.com (550)"
    assert smtp_server.messages[0].rcpt_tos == ["ops@example.com"]


async def test_email_connection_refused_retries(client: httpx.AsyncClient):
    port = closed_port()
    settings = ir.Settings(smtp=ir.Smtp(smarthost=f"127.0.0.1:{port}", sender="irules@example.com", require_tls=False))

    delivery = await deliver(mail(), client, settings=settings)

    assert delivery == Delivery(RETRY, f"connection to smtp server 127.0.0.1:{port} failed (ConnectionRefusedError)")


async def test_email_silent_server_times_out(client: httpx.AsyncClient):
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        settings = ir.Settings(smtp=ir.Smtp(smarthost=f"127.0.0.1:{port}", sender="irules@example.com", require_tls=False))

        delivery = await deliver(mail(), client, settings=settings, endpoints=Endpoints(timeout_s=0.1))

    assert delivery == Delivery(RETRY, f"smtp server 127.0.0.1:{port} disconnected: Connection unexpectedly closed: timed out")


async def test_email_require_tls_without_starttls_fails(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    delivery = await deliver(mail(), client, settings=smtp_server.settings(require_tls=None))

    assert delivery == Delivery(
        FAILED, "smtp server 127.0.0.1 does not offer STARTTLS; set require_tls false to send without TLS"
    )
    assert smtp_server.messages == []


@pytest.fixture
def tls_smtp_server(tmp_path: Path) -> Iterator[tuple[FakeSmtp, Path]]:
    context, certificate = self_signed_tls(tmp_path)
    server = FakeSmtp(tls_context=context).start()
    try:
        yield server, certificate
    finally:
        server.close()


async def test_email_untrusted_certificate_fails(tls_smtp_server: tuple[FakeSmtp, Path], client: httpx.AsyncClient):
    server, _ = tls_smtp_server

    delivery = await deliver(mail(), client, settings=server.settings(require_tls=True))

    assert delivery == Delivery(FAILED, "TLS certificate of smtp server 127.0.0.1 is not valid: self-signed certificate")
    assert server.messages == []


async def test_email_starttls_login_sends(
    tls_smtp_server: tuple[FakeSmtp, Path], client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    server, certificate = tls_smtp_server
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    settings = server.settings(require_tls=True, username=SMTP_USERNAME, password=ir.SecretRef(secret="SMTP_PASSWORD"))

    delivery = await deliver(mail(), client, secrets={"SMTP_PASSWORD": SMTP_PASSWORD}, settings=settings)

    assert delivery.outcome == DELIVERED
    assert server.logins == [SMTP_USERNAME]
    assert len(server.messages) == 1


async def test_email_wrong_password_fails(
    tls_smtp_server: tuple[FakeSmtp, Path], client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    server, certificate = tls_smtp_server
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    settings = server.settings(require_tls=True, username=SMTP_USERNAME, password=ir.SecretRef(secret="SMTP_PASSWORD"))

    delivery = await deliver(mail(), client, secrets={"SMTP_PASSWORD": "wrong-TOKEN-password"}, settings=settings)

    assert delivery == Delivery(FAILED, "smtp login failed 535 5.7.8 Authentication credentials invalid")
    assert server.messages == []


async def test_email_plaintext_remote_login_rejected(client: httpx.AsyncClient):
    smtp = ir.Smtp(
        smarthost="smtp.example.com:587",
        sender="irules@example.com",
        username="alerts",
        password=ir.SecretRef(secret="SMTP_PASSWORD"),
        require_tls=False,
    )

    delivery = await deliver(mail(), client, secrets={"SMTP_PASSWORD": SMTP_PASSWORD}, settings=ir.Settings(smtp=smtp))

    assert delivery == Delivery(FAILED, "smtp login to smtp.example.com needs TLS; set require_tls true")


async def test_email_password_secret_missing_fails(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    settings = smtp_server.settings(username="alerts", password=ir.SecretRef(secret="SMTP_PASSWORD"))

    delivery = await deliver(mail(), client, settings=settings)

    assert delivery == Delivery(RETRY, "secret SMTP_PASSWORD is not set")  # retried: the secret may be added meanwhile


async def test_email_without_smtp_settings_fails(client: httpx.AsyncClient):
    delivery = await deliver(mail(), client)

    assert delivery == Delivery(FAILED, "email channel needs settings smtp")


async def test_email_recipient_with_line_break_fails(smtp_server: FakeSmtp, client: httpx.AsyncClient):
    delivery = await deliver(mail(to="ops@example.com\r\nBcc: x@example.com"), client, settings=smtp_server.settings())

    assert delivery == Delivery(FAILED, "email channel has no valid recipients: 'ops@example.com\\r\\nBcc: x@example.com'")
    assert smtp_server.messages == []


# --- apprise -----------------------------------------------------------------------------------


async def test_apprise_missing_package_fails(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "apprise", None)

    delivery = await deliver(
        Outbound("apprise", {"text": "x"}, secrets={"url": "APPRISE_URL"}), client, secrets={"APPRISE_URL": "tgram://TOKEN/1"}
    )

    assert delivery == Delivery(FAILED, "install apprise to use this channel")


class StubApprise:
    """Stands in for `apprise.Apprise`: keeps the URLs and notifications it was given."""

    calls: ClassVar[list[tuple[str, Any]]] = []
    result = True

    def add(self, url: str) -> bool:
        self.calls.append(("add", url))
        return url.startswith("tgram://")

    def notify(self, body: str, title: str) -> bool:
        self.calls.append(("notify", (body, title)))
        return self.result


@pytest.fixture
def stub_apprise(monkeypatch: pytest.MonkeyPatch) -> type[StubApprise]:
    monkeypatch.setitem(sys.modules, "apprise", types.SimpleNamespace(Apprise=StubApprise))
    monkeypatch.setattr(StubApprise, "calls", [])
    return StubApprise


async def test_apprise_sends_through_package(stub_apprise: type[StubApprise], client: httpx.AsyncClient):
    outbound = Outbound("apprise", {"text": "disk full", "subject": "[FIRING] db-1"}, secrets={"url": "APPRISE_URL"})

    delivery = await deliver(outbound, client, secrets={"APPRISE_URL": "tgram://TOKEN/1"})

    assert delivery == Delivery(DELIVERED)
    assert stub_apprise.calls == [("add", "tgram://TOKEN/1"), ("notify", ("disk full", "[FIRING] db-1"))]


async def test_apprise_unsupported_url_fails(stub_apprise: type[StubApprise], client: httpx.AsyncClient):
    outbound = Outbound("apprise", {"text": "x"}, secrets={"url": "APPRISE_URL"})

    delivery = await deliver(outbound, client, secrets={"APPRISE_URL": "nope://TOKEN"})

    assert delivery == Delivery(FAILED, "apprise does not support the URL in secret APPRISE_URL")


async def test_apprise_failed_notify_retries(
    stub_apprise: type[StubApprise], client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(stub_apprise, "result", False)

    delivery = await deliver(
        Outbound("apprise", {"text": "x"}, secrets={"url": "APPRISE_URL"}), client, secrets={"APPRISE_URL": "tgram://TOKEN/1"}
    )

    assert delivery == Delivery(RETRY, "apprise could not send the message")


# --- the fakes themselves ------------------------------------------------------------------
#
# Outbox, escalation and storm tests trust these fakes, so their own checks are tested here
# with plain requests.


async def test_fake_pagerduty_validates_events(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    event = {
        "routing_key": "short",
        "event_action": "trigger",
        "payload": {"summary": "x" * 1025, "source": "", "severity": "CRITICAL"},
    }

    response = await client.post(fake_saas.endpoints.pagerduty_events, json=event)

    assert response.status_code == 400
    assert response.json()["errors"] == [
        "Length of 'routing_key' is incorrect (should be 32 characters)",
        "Length of 'payload.summary' is greater than 1024 characters",
        "'payload.source' is missing or blank",
        "'payload.severity' is invalid (must be one of: critical, error, warning, info)",
    ]


async def test_fake_pagerduty_answers_like_fixture(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    response = await client.post(fake_saas.endpoints.pagerduty_events, json=fixture_json("pagerduty/trigger.json"))

    assert response.status_code == 202
    assert response.json() == fixture_json("pagerduty/response-202.json")


async def test_fake_twilio_rejects_1601_units(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    form = {"To": "+15555550100", "From": "+15555550199", "Body": "💾" * 800 + "x"}

    response = await client.post(
        fake_saas.url + fake_saas.twilio_messages_path, data=form, auth=(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)
    )

    assert response.status_code == 400
    assert response.json() == fixture_json("twilio/error-400-21617.json")


async def test_fake_twilio_answer_has_fixture_fields(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    expected = fixture_json("twilio/response-201.json")
    form = {"To": expected["to"], "From": expected["from"], "Body": expected["body"]}

    response = await client.post(
        fake_saas.url + fake_saas.twilio_messages_path, data=form, auth=(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)
    )

    assert response.status_code == 201
    answer = response.json()
    assert set(answer) <= set(expected)
    assert {name: answer[name] for name in ("to", "from", "body", "status", "num_segments", "direction")} == {
        name: expected[name] for name in ("to", "from", "body", "status", "num_segments", "direction")
    }


async def test_fake_slack_checks_bearer_token(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    url = fake_saas.endpoints.slack_api + "/chat.postMessage"

    missing = await client.post(url, json={"channel": "#alerts", "text": "x"})
    wrong = await client.post(url, json={"channel": "#alerts", "text": "x"}, headers={"Authorization": "Bearer xoxb-other"})

    assert missing.json() == {"ok": False, "error": "not_authed"}
    assert wrong.json() == {"ok": False, "error": "invalid_auth"}


async def test_fake_slack_rejects_unknown_thread(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    message = {"channel": "#alerts", "text": "x", "thread_ts": "1.000000"}

    response = await client.post(
        fake_saas.endpoints.slack_api + "/chat.postMessage", json=message, headers={"Authorization": f"Bearer {SLACK_TOKEN}"}
    )

    assert response.json() == {"ok": False, "error": "thread_not_found"}


async def test_fake_slack_response_url_accepts_message(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    response = await client.post(fake_saas.slack_response_url, json={"text": "acknowledged", "replace_original": False})

    assert fake_saas.slack_response_url.startswith(fake_saas.endpoints.slack_hooks)
    assert (response.status_code, response.text) == (200, "ok")
    assert fake_saas.requests(fake_saas.slack_response_path)[0].data == {"text": "acknowledged", "replace_original": False}


async def test_fake_script_applies_to_given_count(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    fake_saas.fail_next(fake_saas.webhook_path, status=503, times=2)
    fake_saas.fail_next(fake_saas.webhook_path, status=429, headers={"Retry-After": "1"})

    statuses = [(await client.post(fake_saas.webhook_url, json={})).status_code for _ in range(4)]

    assert statuses == [503, 503, 429, 200]
    recorded = fake_saas.requests(fake_saas.webhook_path)
    assert [request.status for request in recorded] == statuses
    assert [request.at for request in recorded] == sorted(request.at for request in recorded)


async def test_fake_teams_legacy_and_workflows_answers(fake_saas: FakeSaaS, client: httpx.AsyncClient):
    legacy = await client.post(fake_saas.teams_legacy_url, json={"type": "message"})
    workflows = await client.post(fake_saas.teams_workflows_url, json={"type": "message"})

    assert (legacy.status_code, legacy.text) == (200, "1")
    assert (workflows.status_code, workflows.content) == (202, b"")


# --- shared parts ------------------------------------------------------------------------------


async def test_unknown_kind_fails(client: httpx.AsyncClient):
    delivery = await deliver(Outbound("pigeon", {}), client)

    assert delivery == Delivery(FAILED, "unknown channel kind 'pigeon'")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("Thu, 01 Jan 2026 00:02:00 GMT", 120.0),
        ("Wed, 31 Dec 2025 23:00:00 GMT", 0.0),
        ("-1", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None):
    now = email.utils.parsedate_to_datetime("Thu, 01 Jan 2026 00:00:00 GMT").timestamp()

    assert parse_retry_after(value, now=now) == seconds


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://hooks.slack.com/services/T0/B0/TOKEN", "https://hooks.slack.com/…"),
        ("https://user:TOKEN@example.com:8443/", "https://example.com:8443/"),
        ("https://example.com/?token=TOKEN", "https://example.com/…"),
        ("http://[::1]:9000/hook", "http://[::1]:9000/…"),
        ("not a url", "<invalid URL>"),
    ],
)
def test_redact_url(url: str, redacted: str):
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("outbound", "key"),
    [
        (Outbound("slack", {}, target="#alerts", secrets={"token": "SLACK_TOKEN"}), "slack:#alerts"),
        (Outbound("slack", {}, secrets={"url": "SLACK_WEBHOOK_URL"}), "slack:SLACK_WEBHOOK_URL"),
        (Outbound("slack", {}, secrets={"token": "SLACK_TOKEN", "target": "SLACK_CHANNEL"}), "slack:SLACK_CHANNEL"),
        (Outbound("pagerduty", {}, secrets={"key": "PAGERDUTY_KEY"}), "pagerduty:PAGERDUTY_KEY"),
        (Outbound("sms", {}, target="+15555550100", secrets=TWILIO_SECRETS), "sms:twilio"),
        (Outbound("teams", {}, secrets={"url": "TEAMS_URL"}), "teams:TEAMS_URL"),
        (Outbound("apprise", {}, secrets={"url": "APPRISE_URL"}), "apprise:APPRISE_URL"),
        (Outbound("email", {}, target="ops@example.com"), "email"),
    ],
)
def test_endpoint_key(outbound: Outbound, key: str):
    assert endpoint_key(outbound) == key


@pytest.mark.parametrize(
    ("kind", "first", "second", "host"),
    [
        (
            "teams",
            "https://example.webhook.office.com/webhookb2/TOKEN-A",
            "https://example.webhook.office.com/webhookb2/TOKEN-B",
            "example.webhook.office.com",
        ),
        ("webhook", "https://hooks.example.com:8443/team-a", "https://hooks.example.com:8443/team-b", "hooks.example.com"),
    ],
)
def test_endpoint_key_per_literal_url(kind: str, first: str, second: str, host: str):
    keys = [endpoint_key(Outbound(kind, {}, url=url)) for url in (first, second, first)]

    # Two URLs on one host are two endpoints, each limited on its own.
    assert keys[0] != keys[1]
    assert keys[0] == keys[2]
    for key in keys:
        prefix, _, digest = key.rpartition("/")
        assert prefix == f"{kind}:{host}"
        assert len(digest) == 12
        assert all(character in "0123456789abcdef" for character in digest)
        # The path may carry a token, and never appears in a key.
        assert "TOKEN" not in key
        assert "team-" not in key


def test_endpoint_key_of_email_names_smarthost():
    settings = ir.Settings(smtp=ir.Smtp(smarthost="smtp.example.com:587"))

    assert endpoint_key(Outbound("email", {}, target="ops@example.com"), settings) == "email:smtp.example.com:587"


def test_cut_off_request_is_no_delivery(fake_saas: FakeSaaS):
    """A sender killed in the middle of its body sent nothing; the fake, as a real service, records no request."""
    import socket
    import time
    from urllib.parse import urlsplit

    address = urlsplit(fake_saas.url)
    head = (
        f"POST {fake_saas.webhook_path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port)) as connection:
        connection.sendall(head.encode() + b'{"incident": "INC-1"')
    complete = httpx.post(fake_saas.url + fake_saas.webhook_path, json={"incident": "INC-2"}, timeout=5)
    time.sleep(0.2)

    assert complete.status_code < 300
    assert [request.data for request in fake_saas.requests(fake_saas.webhook_path)] == [{"incident": "INC-2"}]
