"""Notification messages: every channel kind and event in English and German, hostile alert data, limits and templates."""

from __future__ import annotations

import copy
import datetime
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from compiler import ir
from runtime.notify import render
from runtime.notify.messages import MAX_TEAMS_BYTES, SMS_SECRETS, cut_utf16, pagerduty_dedup_key, render_message
from runtime.notify.model import Outbound
from targets import slack_blocks

UTC = datetime.UTC
KINDS = ("slack", "teams", "pagerduty", "sms", "email", "webhook")
EVENTS = ("opened", "updated", "acknowledged", "resolved", "escalated", "reminder")
INCIDENT_URL = "https://incidents.example.com/incidents/INC-2026-0042"
TITLE = "Checkout error rate above 5%"

TITLES = {
    "en": {
        "opened": f"[High] Incident INC-2026-0042: {TITLE}",
        "updated": f"Incident INC-2026-0042 updated: {TITLE}",
        "acknowledged": f"Incident INC-2026-0042 acknowledged: {TITLE}",
        "resolved": f"Incident INC-2026-0042 resolved: {TITLE}",
        "escalated": f"Incident INC-2026-0042 escalated to level 2: {TITLE}",
        "reminder": f"Reminder: incident INC-2026-0042 is still unacknowledged: {TITLE}",
    },
    "de": {
        "opened": f"[Hoch] Vorfall INC-2026-0042: {TITLE}",
        "updated": f"Vorfall INC-2026-0042 aktualisiert: {TITLE}",
        "acknowledged": f"Vorfall INC-2026-0042 bestätigt: {TITLE}",
        "resolved": f"Vorfall INC-2026-0042 behoben: {TITLE}",
        "escalated": f"Vorfall INC-2026-0042 eskaliert auf Stufe 2: {TITLE}",
        "reminder": f"Erinnerung: Vorfall INC-2026-0042 ist noch nicht bestätigt: {TITLE}",
    },
}
TEXTS = {
    "en": {
        "opened": "5xx ratio above 5%\nOpen since 2026-03-04 09:21 UTC, 2 of 3 alerts firing.",
        "updated": "Status: Investigating, 2 of 3 alerts firing.",
        "acknowledged": "Acknowledged by alice@example.com at 2026-03-04 09:30 UTC.",
        "resolved": "Resolved at 2026-03-04 09:48 UTC after 27 min.",
        "escalated": "Escalated to level 2 of the escalation policy standard, because nobody acknowledged the incident.",
        "reminder": "Open for 2 h 5 min, 2 of 3 alerts firing.",
    },
    "de": {
        "opened": "5xx ratio above 5%\nOffen seit 04.03.2026, 09:21 UTC, 2 von 3 Alarmen aktiv.",
        "updated": "Status: In Untersuchung, 2 von 3 Alarmen aktiv.",
        "acknowledged": "Bestätigt von alice@example.com am 04.03.2026, 09:30 UTC.",
        "resolved": "Nach 27 Min. behoben (04.03.2026, 09:48 UTC).",
        "escalated": "Eskaliert auf Stufe 2 der Eskalationsrichtlinie standard, weil niemand den Vorfall bestätigt hat.",
        "reminder": "Seit 2 Std. 5 Min. offen, 2 von 3 Alarmen aktiv.",
    },
}


def make_ruleset(
    *,
    settings: dict[str, Any] | None = None,
    templates: tuple[ir.Template, ...] = (),
    slack: ir.Slack | None = None,
) -> ir.Ruleset:
    options = {"incident_url": "https://incidents.example.com", "timezone": "UTC", **(settings or {})}
    return ir.Ruleset(
        irules_version="0.1.0",
        source_digest="0" * 64,
        settings=ir.Settings(**options),
        receivers=[ir.Receiver(name="payments")],
        route=ir.Route(id="0", receiver="payments", group_wait_s=10, group_interval_s=30, repeat_interval_s=3600),
        templates=list(templates),
        slack=slack,
        pagerduty=ir.PagerDuty(priorities={"critical": "P1", "high": "P2", "medium": "P3", "low": "P4"}),
    )


RULESET = make_ruleset(slack=ir.Slack(token=ir.SecretRef(secret="SLACK_BOT_TOKEN")))


def at(hour: int, minute: int) -> datetime.datetime:
    return datetime.datetime(2026, 3, 4, hour, minute, tzinfo=UTC)


def alert(name: str, status: str, summary: str | None = None, **labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "status": status,
        "labels": {"alertname": name, "service": "checkout", **labels},
        "annotations": {"summary": summary} if summary else {},
        "starts_at": at(9, 20),
        "severity": "high",
        "source": "alertmanager",
        "fingerprint": f"fp-{name.lower()}",
    }


def make_context(event: str = "opened", **incident: Any) -> dict[str, Any]:
    """Return a message context for `event` with the incident in the state that event leaves it in."""
    base = {
        "id": "INC-2026-0042",
        "number": 42,
        "title": TITLE,
        "status": "detected",
        "severity": "high",
        "team": "payments",
        "services": ["checkout"],
        "receivers": ["payments"],
        "created_at": at(9, 21),
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": None,
        "alert_count": 3,
        "firing_count": 2,
        "escalation_level": 0,
        "url": INCIDENT_URL,
    }
    if event in ("updated", "acknowledged", "resolved"):
        base["status"] = "investigating"
    if event in ("acknowledged", "resolved"):
        base.update(acknowledged_at=at(9, 30), acknowledged_by="alice@example.com")
    if event == "resolved":
        base.update(status="resolved", resolved_at=at(9, 48), firing_count=0)
    if event == "escalated":
        base["escalation_level"] = 2
    base.update(incident)
    firing = "resolved" if event == "resolved" else "firing"
    return {
        "event": event,
        "incident": base,
        "alerts": [
            alert("HighErrorRate", firing, "5xx ratio above 5%", instance="checkout-0.example.com:8080"),
            alert("LatencyHigh", firing, "p99 above 2 s"),
            alert("PodRestarts", "resolved"),
        ],
        "services": [
            {
                "name": "checkout",
                "team": "payments",
                "tier": 1,
                "runbook_url": "https://runbooks.example.com/checkout",
                "description": "Checkout API",
                "depends_on": ["ledger"],
            }
        ],
        "owner": {"team": "payments", "members": ["alice@example.com", "bob@example.com"]},
        "runbooks": [{"name": "restart-checkout", "description": "Restart the checkout pods"}],
        "similar": [
            {"id": "INC-2026-0031", "title": "Checkout errors", "resolved_at": at(8, 2), "resolution": "Rolled back 4.2.1"}
        ],
        "escalation": {"policy": "standard", "level": 2, "step": "after 20m unacknowledged notify payments-lead"}
        if event == "escalated"
        else None,
        "now": at(11, 26),
    }


CHANNELS = {
    "slack": ir.Channel(kind="slack", target="#payments"),
    "teams": ir.Channel(kind="teams", url=ir.SecretRef(secret="TEAMS_INCIDENT_WEBHOOK")),
    "pagerduty": ir.Channel(kind="pagerduty", key=ir.SecretRef(secret="PAGERDUTY_KEY")),
    "sms": ir.Channel(kind="sms", target="+4930123456789"),
    "email": ir.Channel(kind="email", target="payments@example.com"),
    "webhook": ir.Channel(kind="webhook", url="https://hooks.example.com/irules"),
}


def render_for(
    kind: str, event: str = "opened", locale: str | None = "en", ruleset: ir.Ruleset = RULESET, **incident: Any
) -> Outbound:
    return render_message(CHANNELS[kind], "payments", make_context(event, **incident), ruleset, locale=locale)


def user_template(name: str = "custom", **locales: dict[str, str]) -> ir.Template:
    return ir.Template(name=name, locales=locales)


def with_template(kind: str, template: ir.Template, **options: Any) -> tuple[ir.Channel, ir.Ruleset]:
    channel = CHANNELS[kind].model_copy(update={"template": template.name})
    ruleset = make_ruleset(templates=[template], slack=ir.Slack(token=ir.SecretRef(secret="SLACK_BOT_TOKEN")), **options)
    return channel, ruleset


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def mrkdwn_texts(message: dict[str, Any]) -> Iterator[str]:
    """Yield every text of a Slack message that Slack reads as mrkdwn: the fallback text and mrkdwn objects."""
    yield message["text"]
    for block in message["blocks"]:
        for text in _text_objects(block):
            if text["type"] == "mrkdwn":
                yield text["text"]


def _text_objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if value.get("type") in ("mrkdwn", "plain_text") and isinstance(value.get("text"), str):
            yield value
        for item in value.values():
            yield from _text_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _text_objects(item)


def block_kit_problems(message: dict[str, Any]) -> list[str]:
    """Return every Block Kit limit the message breaks, as listed in Slack's reference."""
    problems = []
    blocks = message["blocks"]
    if len(blocks) > slack_blocks.MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks")
    for block in blocks:
        if len(block.get("block_id", "")) > slack_blocks.MAX_BLOCK_ID:
            problems.append("block_id")
        if block["type"] == "header" and not 0 < len(block["text"]["text"]) <= slack_blocks.MAX_HEADER_TEXT:
            problems.append(f"header of {len(block['text']['text'])}")
        if block["type"] == "section":
            if "text" in block and not 0 < len(block["text"]["text"]) <= slack_blocks.MAX_SECTION_TEXT:
                problems.append(f"section of {len(block['text']['text'])}")
            fields = block.get("fields", [])
            if len(fields) > slack_blocks.MAX_FIELDS:
                problems.append(f"{len(fields)} fields")
            problems += [f"field of {len(f['text'])}" for f in fields if len(f["text"]) > slack_blocks.MAX_FIELD_TEXT]
        if block["type"] == "actions":
            for button in block["elements"]:
                if (
                    len(button["text"]["text"]) > slack_blocks.MAX_BUTTON_TEXT
                    or len(button["value"]) > slack_blocks.MAX_BUTTON_VALUE
                ):
                    problems.append("button")
        if block["type"] == "context":
            problems += [
                f"context of {len(e['text'])}" for e in block["elements"] if len(e["text"]) > slack_blocks.MAX_CONTEXT_TEXT
            ]
    return problems


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# ---------------------------------------------------------------- every kind, event and locale


@pytest.mark.parametrize("locale", ["en", "de"])
@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_event_and_locale(kind: str, event: str, locale: str) -> None:
    outbound = render_for(kind, event, locale)

    assert outbound.kind == kind
    stored = json.loads(json.dumps(outbound.to_json()))
    assert Outbound.from_json(stored) == outbound
    title = TITLES[locale][event]
    payload = outbound.payload
    if kind == "slack":
        assert payload["blocks"][0]["text"]["text"] == title
        assert payload["text"] == title
        assert ("root_update" in payload) is (event != "opened")
        assert block_kit_problems(payload) == []
    elif kind == "teams":
        assert payload["attachments"][0]["content"]["body"][0]["text"] == title
    elif kind == "pagerduty":
        expected = {"acknowledged": "acknowledge", "resolved": "resolve"}.get(event, "trigger")
        assert payload["event_action"] == expected
        assert payload["dedup_key"] == "irules-INC-2026-0042"
        assert "routing_key" not in payload
    elif kind == "sms":
        assert payload["Body"] == f"{title}\n{TEXTS[locale][event]}\n{INCIDENT_URL}"
    elif kind == "email":
        assert payload["subject"] == title
        assert payload["text"].startswith(TEXTS[locale][event] + "\n\n")
    else:
        assert (payload["version"], payload["event"], payload["title"]) == ("1", event, title)


@pytest.mark.parametrize("locale", ["en", "de"])
@pytest.mark.parametrize("event", EVENTS)
def test_shipped_text_per_event_and_locale(event: str, locale: str) -> None:
    assert render_for("webhook", event, locale).payload["text"] == TEXTS[locale][event]


@pytest.mark.parametrize(
    ("event", "locale", "expected"),
    [
        ("opened", "en", "INC-2026-0042: Checkout error rate above 5% – 5xx ratio above 5%"),
        ("escalated", "en", "[Level 2] INC-2026-0042: Checkout error rate above 5% – 5xx ratio above 5%"),
        ("escalated", "de", "[Stufe 2] INC-2026-0042: Checkout error rate above 5% – 5xx ratio above 5%"),
        ("reminder", "de", "[Erinnerung] INC-2026-0042: Checkout error rate above 5% – 5xx ratio above 5%"),
    ],
)
def test_pagerduty_summary_per_event(event: str, locale: str, expected: str) -> None:
    assert render_for("pagerduty", event, locale).payload["payload"]["summary"] == expected


def test_reminder_after_acknowledgement() -> None:
    outbound = render_for("webhook", "reminder", "de", acknowledged_at=at(9, 30), acknowledged_by="alice@example.com")

    assert outbound.payload["title"] == f"Erinnerung: Vorfall INC-2026-0042 ist noch nicht behoben: {TITLE}"


def test_settings_locale_is_default() -> None:
    ruleset = make_ruleset(settings={"locale": "de"})

    outbound = render_for("webhook", "resolved", None, ruleset)

    assert outbound.payload["title"] == TITLES["de"]["resolved"]
    assert outbound.payload["locale"] == "de"


@pytest.mark.parametrize(("locale", "language"), [("de-CH", "de"), ("de_AT", "de"), ("fr", "en"), ("en-GB", "en")])
def test_locale_fallback_chain(locale: str, language: str) -> None:
    assert render_for("webhook", "acknowledged", locale).payload["title"] == TITLES[language]["acknowledged"]


def test_times_in_configured_zone() -> None:
    ruleset = make_ruleset(settings={"timezone": "Europe/Berlin"})

    outbound = render_for("email", "acknowledged", "de", ruleset)

    assert "Bestätigt von alice@example.com am 04.03.2026, 10:30 CET." in outbound.payload["text"]
    assert "Beginn:        04.03.2026, 10:21 CET" in outbound.payload["text"]


# ---------------------------------------------------------------- slack


def test_slack_opened_message_blocks() -> None:
    outbound = render_for("slack", "opened", "en")
    blocks = outbound.payload["blocks"]

    assert [block["type"] for block in blocks] == [
        "header",
        "section",
        "section",
        "section",
        "section",
        "section",
        "actions",
        "context",
    ]
    assert blocks[1] == {
        "type": "section",
        "block_id": "incident_summary",
        "text": {"type": "mrkdwn", "text": TEXTS["en"]["opened"]},
    }
    assert [field["text"] for field in blocks[2]["fields"]] == [
        "*Severity*\nHigh",
        "*Status*\nDetected",
        "*Team*\npayments",
        "*Services*\ncheckout",
        "*Owner*\npayments: alice@example.com, bob@example.com",
        "*Started*\n<!date^1772616060^{date_short_pretty} {time}|2026-03-04 09:21 UTC>",
    ]
    assert blocks[3]["text"]["text"] == (
        "*Alerts · 2 of 3 firing*\n"
        "• HighErrorRate (firing): 5xx ratio above 5%\n"
        "• LatencyHigh (firing): p99 above 2 s\n"
        "• PodRestarts (resolved)"
    )
    assert blocks[4]["text"]["text"] == (
        "*Runbooks*\n• <https://runbooks.example.com/checkout|checkout>\n• restart-checkout: Restart the checkout pods"
    )
    assert blocks[5]["text"]["text"] == (
        "*Similar incidents*\n• INC-2026-0031: Checkout errors (resolved 2026-03-04 08:02 UTC) – Rolled back 4.2.1"
    )
    assert blocks[7]["elements"] == [{"type": "mrkdwn", "text": f"Incident <{INCIDENT_URL}|INC-2026-0042>"}]


def test_slack_open_incident_buttons() -> None:
    actions = next(block for block in render_for("slack", "opened", "de").payload["blocks"] if block["type"] == "actions")

    assert [(button["action_id"], button["text"]["text"], button["value"]) for button in actions["elements"]] == [
        (slack_blocks.ACKNOWLEDGE, "Bestätigen", "INC-2026-0042"),
        (slack_blocks.START_RESPONSE, "Reaktion starten", "INC-2026-0042"),
    ]
    assert actions["elements"][1]["confirm"]["title"]["text"] == "Vorfallreaktion starten?"


def test_slack_acknowledged_incident_buttons() -> None:
    blocks = render_for("slack", "acknowledged", "en").payload["blocks"]
    actions = next(block for block in blocks if block["type"] == "actions")

    assert [button["action_id"] for button in actions["elements"]] == [slack_blocks.START_RESPONSE]


def test_slack_resolved_root_update() -> None:
    payload = render_for("slack", "resolved", "en").payload
    root = payload["root_update"]

    assert "actions" not in [block["type"] for block in payload["blocks"]]
    assert root["blocks"][0]["text"]["text"] == f"[Resolved] Incident INC-2026-0042: {TITLE}"
    assert root["blocks"][1]["text"]["text"] == "Resolved at 2026-03-04 09:48 UTC after 27 min."
    assert root["blocks"][2]["fields"][1]["text"] == "*Status*\nResolved"
    assert "actions" not in [block["type"] for block in root["blocks"]]
    assert set(root) == {"text", "blocks", "unfurl_links", "unfurl_media"}


def test_slack_acknowledged_root_update() -> None:
    root = render_for("slack", "acknowledged", "de").payload["root_update"]

    assert root["blocks"][0]["text"]["text"] == TITLES["de"]["opened"]
    assert root["blocks"][2]["fields"][1]["text"] == "*Status*\nIn Untersuchung"
    assert root["blocks"][2]["fields"][6]["text"] == "*Bestätigt von*\nalice@example.com"


def test_slack_escalation_field_shows_level_and_policy() -> None:
    fields = render_for("slack", "escalated", "de").payload["blocks"][2]["fields"]

    assert fields[-1]["text"] == "*Eskalation*\nStufe 2 · standard"


def test_slack_bot_token_secret() -> None:
    outbound = render_for("slack")

    assert (outbound.target, outbound.url, outbound.secrets) == ("#payments", None, {"token": "SLACK_BOT_TOKEN"})


def test_slack_webhook_url_secret() -> None:
    ruleset = make_ruleset(settings={"slack_api_url": ir.SecretRef(secret="SLACK_API_URL")})

    outbound = render_for("slack", ruleset=ruleset)

    assert (outbound.target, outbound.url, outbound.secrets) == ("#payments", None, {"url": "SLACK_API_URL"})


def test_slack_plain_channel_url() -> None:
    ruleset = make_ruleset(settings={"slack_api_url": ir.SecretRef(secret="SLACK_API_URL")})
    channel = ir.Channel(kind="slack", target="#payments", url="https://hooks.example.com/plain")

    outbound = render_message(channel, "payments", make_context(), ruleset)

    assert (outbound.url, outbound.secrets) == ("https://hooks.example.com/plain", {})


def test_slack_link_from_incident_url_setting() -> None:
    outbound = render_for("slack", url=None)

    assert outbound.payload["blocks"][-1]["elements"][0]["text"] == f"Incident <{INCIDENT_URL}|INC-2026-0042>"


def test_slack_link_without_incident_url() -> None:
    ruleset = make_ruleset(settings={"incident_url": None}, slack=RULESET.slack)

    outbound = render_for("slack", ruleset=ruleset, url=None)

    assert outbound.payload["blocks"][-1]["elements"][0]["text"] == "Incident INC-2026-0042"


# ---------------------------------------------------------------- teams


def test_teams_card_follows_adaptive_card_envelope() -> None:
    payload = render_for("teams", "opened", "de").payload
    attachment = payload["attachments"][0]
    card = attachment["content"]

    assert payload["type"] == "message"
    assert (attachment["contentType"], attachment["contentUrl"]) == ("application/vnd.microsoft.card.adaptive", None)
    assert (card["type"], card["version"], card["msteams"]) == ("AdaptiveCard", "1.4", {"width": "Full"})
    assert card["body"][0]["color"] == "Attention"
    assert [block["text"] for block in card["body"][1:3]] == [
        "5xx ratio above 5%",
        "Offen seit 04.03.2026, 09:21 UTC, 2 von 3 Alarmen aktiv.",
    ]
    assert card["body"][3]["facts"][:3] == [
        {"title": "Schweregrad", "value": "Hoch"},
        {"title": "Status", "value": "Erkannt"},
        {"title": "Team", "value": "payments"},
    ]
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Vorfall öffnen", "url": INCIDENT_URL},
        {"type": "Action.OpenUrl", "title": "Runbook: checkout", "url": "https://runbooks.example.com/checkout"},
    ]


def test_teams_resolved_card_is_green() -> None:
    card = render_for("teams", "resolved", "en").payload["attachments"][0]["content"]

    assert card["body"][0]["color"] == "Good"


def test_teams_url_secret_and_plain_target() -> None:
    secret = render_for("teams")
    plain = render_message(
        ir.Channel(kind="teams", target="https://example.webhook.office.com/x"), "payments", make_context(), RULESET
    )

    assert (secret.url, secret.secrets) == (None, {"url": "TEAMS_INCIDENT_WEBHOOK"})
    assert (plain.url, plain.secrets) == ("https://example.webhook.office.com/x", {})


# ---------------------------------------------------------------- pagerduty


def test_pagerduty_trigger_event() -> None:
    outbound = render_for("pagerduty", "opened", "en")
    event = outbound.payload

    assert outbound.secrets == {"key": "PAGERDUTY_KEY"}
    assert outbound.target is None
    assert set(event) == {"event_action", "dedup_key", "payload", "client", "client_url", "links"}
    payload = event["payload"]
    assert payload["source"] == "checkout-0.example.com:8080"
    assert payload["severity"] == "error"
    assert payload["timestamp"] == "2026-03-04T09:21:00+00:00"
    assert (payload["component"], payload["group"], payload["class"]) == ("checkout", "payments", "HighErrorRate")
    details = payload["custom_details"]
    assert (details["incident"], details["priority"], details["status"], details["firing_count"]) == (
        "INC-2026-0042",
        "P2",
        "detected",
        2,
    )
    assert [entry["name"] for entry in details["alerts"]] == ["HighErrorRate", "LatencyHigh", "PodRestarts"]
    assert details["alerts"][0]["starts_at"] == "2026-03-04T09:20:00+00:00"
    assert (event["client"], event["client_url"]) == ("irules", INCIDENT_URL)
    assert event["links"] == [
        {"href": INCIDENT_URL, "text": "Incident INC-2026-0042"},
        {"href": "https://runbooks.example.com/checkout", "text": "Runbook: checkout"},
    ]


@pytest.mark.parametrize(("event", "action"), [("acknowledged", "acknowledge"), ("resolved", "resolve")])
def test_pagerduty_follow_up_event_fields(event: str, action: str) -> None:
    assert render_for("pagerduty", event).payload == {"event_action": action, "dedup_key": "irules-INC-2026-0042"}


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("critical", "critical"), ("high", "error"), ("medium", "warning"), ("low", "info"), (None, "info")],
)
def test_pagerduty_severity_mapping(severity: str | None, expected: str) -> None:
    assert render_for("pagerduty", severity=severity).payload["payload"]["severity"] == expected


def test_pagerduty_source_falls_back_to_service() -> None:
    context = make_context()
    for entry in context["alerts"]:
        entry["labels"].pop("instance", None)

    outbound = render_message(CHANNELS["pagerduty"], "payments", context, RULESET)

    assert outbound.payload["payload"]["source"] == "checkout"


def test_pagerduty_dedup_key() -> None:
    long_key = "INC-" + "9" * 400

    assert pagerduty_dedup_key("INC-2026-0042") == "irules-INC-2026-0042"
    assert pagerduty_dedup_key(long_key) == pagerduty_dedup_key(long_key)
    assert pagerduty_dedup_key(long_key).startswith("irules-sha256-")
    assert len(pagerduty_dedup_key(long_key)) == 78
    assert pagerduty_dedup_key("INC-1\n") != pagerduty_dedup_key("INC-1")


def test_pagerduty_oversized_event_details() -> None:
    context = make_context()
    huge = {f"label{index}": "x" * 1000 for index in range(100)}
    context["alerts"] = [alert(f"Alert{index}", "firing", **huge) for index in range(20)]

    outbound = render_message(CHANNELS["pagerduty"], "payments", context, RULESET)

    assert "custom_details" not in outbound.payload["payload"]
    assert len(json.dumps(outbound.payload).encode()) <= 512_000


# ---------------------------------------------------------------- sms, email and webhooks


def test_sms_target_and_twilio_secret_names() -> None:
    outbound = render_for("sms")

    assert outbound.target == "+4930123456789"
    assert (
        outbound.secrets
        == SMS_SECRETS
        == {"account_sid": "TWILIO_ACCOUNT_SID", "auth_token": "TWILIO_AUTH_TOKEN", "from": "TWILIO_FROM"}
    )


def test_email_parts() -> None:
    ruleset = make_ruleset(
        settings={"smtp": ir.Smtp(smarthost="smtp.example.com:587", password=ir.SecretRef(secret="SMTP_PASSWORD"))}
    )

    outbound = render_for("email", "opened", "en", ruleset)
    payload = outbound.payload

    assert (outbound.target, outbound.secrets) == ("payments@example.com", {"password": "SMTP_PASSWORD"})
    assert set(payload) == {"subject", "text", "html"}
    assert payload["text"] == (
        "5xx ratio above 5%\nOpen since 2026-03-04 09:21 UTC, 2 of 3 alerts firing.\n\n"
        "Severity: High\nStatus:   Detected\nTeam:     payments\nServices: checkout\n"
        "Owner:    payments: alice@example.com, bob@example.com\nStarted:  2026-03-04 09:21 UTC\n\n"
        "Alerts · 2 of 3 firing\n- HighErrorRate (firing): 5xx ratio above 5%\n- LatencyHigh (firing): p99 above 2 s\n"
        "- PodRestarts (resolved)\n\n"
        "Runbooks\n- checkout <https://runbooks.example.com/checkout>\n- restart-checkout: Restart the checkout pods\n\n"
        "Similar incidents\n- INC-2026-0031: Checkout errors (resolved 2026-03-04 08:02 UTC) – Rolled back 4.2.1\n\n"
        f"Open incident: {INCIDENT_URL}\n"
    )
    assert payload["html"].startswith('<!DOCTYPE html>\n<html lang="en">')
    assert f'<p><a href="{INCIDENT_URL}">Open incident</a></p>' in payload["html"]
    assert "<p>5xx ratio above 5%<br>Open since 2026-03-04 09:21 UTC, 2 of 3 alerts firing.</p>" in payload["html"]


def test_email_subject_is_one_line() -> None:
    outbound = render_for("email", title="Line one\r\nBcc: victim@example.com")

    assert outbound.payload["subject"] == "[High] Incident INC-2026-0042: Line one Bcc: victim@example.com"


def test_webhook_document() -> None:
    outbound = render_for("webhook", "escalated", "en")
    document = outbound.payload

    assert (outbound.url, outbound.secrets) == ("https://hooks.example.com/irules", {})
    assert set(document) == {
        "version",
        "event",
        "receiver",
        "locale",
        "title",
        "text",
        "incident",
        "alerts",
        "services",
        "owner",
        "runbooks",
        "similar",
        "escalation",
        "approval",
        "sent_at",
    }
    assert document["incident"]["created_at"] == "2026-03-04T09:21:00+00:00"
    assert document["incident"]["url"] == INCIDENT_URL
    assert document["alerts"][0]["starts_at"] == "2026-03-04T09:20:00+00:00"
    assert document["similar"][0]["resolved_at"] == "2026-03-04T08:02:00+00:00"
    assert document["escalation"] == {"policy": "standard", "level": 2, "step": "after 20m unacknowledged notify payments-lead"}
    assert document["sent_at"] == "2026-03-04T11:26:00+00:00"
    assert document["receiver"] == "payments"


def test_webhook_url_secret() -> None:
    channel = ir.Channel(kind="webhook", url=ir.SecretRef(secret="HOOK_URL"))

    outbound = render_message(channel, "payments", make_context(), RULESET)

    assert (outbound.url, outbound.secrets) == (None, {"url": "HOOK_URL"})


def test_unknown_channel_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown channel kind 'pigeon'"):
        render_message(ir.Channel(kind="pigeon"), "payments", make_context(), RULESET)


# ---------------------------------------------------------------- hostile alert data

HOSTILE = (
    "{{ 7*7 }} {% for x in range(3) %}loop{% endfor %} <!channel> <https://evil.example.com|click> & <script>alert(1)</script>"
)


def hostile_context(event: str = "opened") -> dict[str, Any]:
    context = make_context(event, title=f"Title {HOSTILE}")
    context["alerts"][0]["labels"]["note"] = HOSTILE
    context["alerts"][0]["annotations"]["summary"] = HOSTILE
    return context


@pytest.mark.parametrize("kind", KINDS)
def test_alert_data_is_never_evaluated(kind: str) -> None:
    outbound = render_message(CHANNELS[kind], "payments", hostile_context(), RULESET)
    texts = list(strings(outbound.payload))

    assert not any("49" in text for text in texts)
    assert not any("looplooploop" in text for text in texts)
    assert any("{{ 7*7 }} {% for x in range(3) %}loop{% endfor %}" in text for text in texts)


def test_user_template_prints_syntax_literally() -> None:
    template = user_template(en={"title": "{{ label.note }}", "text": "{{ annotation.summary }}"})
    channel, ruleset = with_template("webhook", template)

    outbound = render_message(channel, "payments", hostile_context(), ruleset)

    assert outbound.payload["title"] == HOSTILE
    assert outbound.payload["text"] == HOSTILE


@pytest.mark.parametrize("event", EVENTS)
def test_slack_escapes_alert_data_in_mrkdwn(event: str) -> None:
    payload = render_message(CHANNELS["slack"], "payments", hostile_context(event), RULESET).payload

    for message in (payload, payload.get("root_update", payload)):
        for text in mrkdwn_texts(message):
            assert "<!channel>" not in text
            assert "<https://evil" not in text
            assert "<script>" not in text
    assert "&lt;!channel&gt; &lt;https://evil.example.com|click&gt; &amp; &lt;script&gt;" in payload["text"]


def test_slack_summary_and_alerts_escaped() -> None:
    blocks = render_message(CHANNELS["slack"], "payments", hostile_context(), RULESET).payload["blocks"]
    escaped = "&lt;!channel&gt; &lt;https://evil.example.com|click&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;"

    assert blocks[1]["text"]["text"].startswith("{{ 7*7 }} {% for x in range(3) %}loop{% endfor %} " + escaped + "\n")
    assert (
        f"• HighErrorRate (firing): {{{{ 7*7 }}}} {{% for x in range(3) %}}loop{{% endfor %}} {escaped}"
        in blocks[3]["text"]["text"]
    )


def test_slack_header_is_plain_text() -> None:
    header = render_message(CHANNELS["slack"], "payments", hostile_context(), RULESET).payload["blocks"][0]

    assert header["text"]["type"] == "plain_text"
    assert header["text"]["text"].startswith("[High] Incident INC-2026-0042: Title {{ 7*7 }}")


def test_user_template_mrkdwn_escaping() -> None:
    template = user_template(
        en={"title": "{{ label.alertname }}", "text": "<https://runbooks.example.com|Runbook> {{ annotation.summary }}"}
    )
    channel, ruleset = with_template("slack", template)

    blocks = render_message(channel, "payments", hostile_context(), ruleset).payload["blocks"]

    assert blocks[1]["text"]["text"].startswith("<https://runbooks.example.com|Runbook> {{ 7*7 }}")
    assert "&lt;!channel&gt;" in blocks[1]["text"]["text"]


def test_email_html_escapes_alert_data() -> None:
    html = render_message(CHANNELS["email"], "payments", hostile_context(), RULESET).payload["html"]

    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;!channel&gt;" in html
    assert html.count("<a href=") == 2


def test_email_html_drops_non_web_links() -> None:
    context = make_context(url="javascript:alert(1)")
    context["services"][0]["runbook_url"] = "javascript:alert(2)"
    ruleset = make_ruleset(settings={"incident_url": None})

    html = render_message(CHANNELS["email"], "payments", context, ruleset).payload["html"]

    assert "javascript:" not in html
    assert "<a href=" not in html


# ---------------------------------------------------------------- limits


def test_slack_header_and_fallback_are_cut() -> None:
    payload = render_for("slack", title="Ü" * 500).payload

    assert len(payload["blocks"][0]["text"]["text"]) == slack_blocks.MAX_HEADER_TEXT
    assert payload["blocks"][0]["text"]["text"].endswith("Ü…")
    assert len(payload["text"]) == 300
    assert block_kit_problems(payload) == []


def test_slack_cut_keeps_entities_whole() -> None:
    context = make_context()
    context["alerts"][0]["annotations"]["summary"] = "&" * 10_000

    payload = render_message(CHANNELS["slack"], "payments", context, RULESET).payload
    summary = payload["blocks"][1]["text"]["text"]

    assert len(summary) <= slack_blocks.MAX_SECTION_TEXT
    assert summary.endswith("&amp;…")
    assert block_kit_problems(payload) == []


def test_slack_cut_before_unclosed_link() -> None:
    template = user_template(en={"text": "{{ 'x' * 2990 }} <https://runbooks.example.com/very/long/path|Runbook>"})
    channel, ruleset = with_template("slack", template)

    summary = render_message(channel, "payments", make_context(), ruleset).payload["blocks"][1]["text"]["text"]

    assert summary == "x" * 2990 + "…"


def test_slack_limits_with_long_values() -> None:
    context = make_context("acknowledged", team="t" * 3000, services=["s" * 3000] * 3)
    context["alerts"] = [alert(f"Alert{index}", "firing", "ä" * 4000, note="n" * 4000) for index in range(20)]
    context["owner"] = {"team": "o" * 3000, "members": ["m" * 3000] * 10}
    context["runbooks"] = [{"name": "r" * 500, "description": "d" * 3000}] * 30
    context["similar"] = [{"id": "INC-1", "title": "<x>" * 2000, "resolved_at": at(8, 0), "resolution": "&" * 3000}] * 10

    payload = render_message(CHANNELS["slack"], "payments", context, RULESET).payload

    assert block_kit_problems(payload) == []
    assert block_kit_problems(payload["root_update"]) == []


def test_pagerduty_summary_limit_non_ascii() -> None:
    summary = render_for("pagerduty", title="ディスク残量↑" * 400).payload["payload"]["summary"]

    assert len(summary) == 1024
    assert summary.startswith("INC-2026-0042: ディスク残量↑")
    assert summary.endswith("…")


def test_sms_body_limit_with_emoji() -> None:
    body = render_for("sms", title="🔥" * 2000).payload["Body"]

    assert utf16_units(body) <= 1600
    assert utf16_units(body) >= 1599
    assert body.endswith("…")
    body.encode("utf-8")  # a split surrogate pair would raise here


def test_cut_utf16_astral_characters() -> None:
    assert cut_utf16("ab🔥", 4) == "ab🔥"
    assert cut_utf16("ab🔥c", 4) == "ab…"
    assert cut_utf16("abcdef", 4) == "abc…"


def test_teams_card_size_limit() -> None:
    context = make_context()
    context["alerts"] = [alert(f"Alert{index}", "firing", "漢字" * 2000) for index in range(20)]
    context["similar"] = [{"id": "INC-1", "title": "漢" * 3000, "resolved_at": at(8, 0), "resolution": "字" * 3000}] * 5

    payload = render_message(CHANNELS["teams"], "payments", context, RULESET).payload
    body = payload["attachments"][0]["content"]["body"]

    assert len(json.dumps(payload, ensure_ascii=False).encode()) <= MAX_TEAMS_BYTES
    assert body[0]["text"] == f"[High] Incident INC-2026-0042: {TITLE}"
    assert any(block.get("text") == "Alerts · 2 of 3 firing" for block in body)
    texts = [block.get("text") for block in body]
    assert texts.count("- … and 10 more") == 1
    assert sum(1 for text in texts if text and text.startswith("- Alert")) == 10


def test_teams_card_huge_text() -> None:
    template = user_template(en={"title": "{{ '漢' * 5000 }}", "text": "{% for i in range(200) %}{{ '字' * 20 }}\n{% endfor %}"})
    channel, ruleset = with_template("teams", template)
    context = make_context(services=["漢" * 5000])

    payload = render_message(channel, "payments", context, ruleset).payload

    assert len(json.dumps(payload, ensure_ascii=False).encode()) <= MAX_TEAMS_BYTES


def test_rendered_field_limit() -> None:
    template = user_template(en={"text": "{% for i in range(10000) %}abc{% endfor %}"})
    channel, ruleset = with_template("webhook", template)

    text = render_message(channel, "payments", make_context(), ruleset).payload["text"]

    assert len(text) == render.MAX_FIELD_CHARS
    assert text.endswith("…")


# ---------------------------------------------------------------- user templates


def test_user_template_overrides_title_and_text() -> None:
    template = user_template(
        en={
            "title": "[{{ incident.severity | upper }}] {{ label.alertname }} on {{ service.name }}",
            "text": "{{ annotation.summary }}",
        },
        de={
            "title": "[{{ incident.severity | upper }}] {{ label.alertname }} bei {{ service.name }}",
            "text": "Zusammenfassung: {{ annotation.summary }}",
        },
    )
    channel, ruleset = with_template("slack", template)

    english = render_message(channel, "payments", make_context(), ruleset, locale="en").payload
    german = render_message(channel, "payments", make_context(), ruleset, locale="de").payload

    assert english["blocks"][0]["text"]["text"] == "[HIGH] HighErrorRate on checkout"
    assert english["blocks"][1]["text"]["text"] == "5xx ratio above 5%"
    assert german["blocks"][0]["text"]["text"] == "[HIGH] HighErrorRate bei checkout"
    assert german["blocks"][1]["text"]["text"] == "Zusammenfassung: 5xx ratio above 5%"
    assert german["blocks"][2]["fields"][0]["text"] == "*Schweregrad*\nHoch"


def test_user_template_english_fallback() -> None:
    template = user_template(en={"title": "EN {{ incident.id }}", "text": "EN text"}, de={"title": "DE {{ incident.id }}"})
    channel, ruleset = with_template("webhook", template)

    payload = render_message(channel, "payments", make_context(), ruleset, locale="de").payload

    assert (payload["title"], payload["text"]) == ("DE INC-2026-0042", "EN text")


def test_user_template_without_field_keeps_shipped_text() -> None:
    template = user_template(en={"title": "Custom {{ incident.id }}"})
    channel, ruleset = with_template("webhook", template)

    payload = render_message(channel, "payments", make_context("acknowledged"), ruleset, locale="de").payload

    assert payload["title"] == "Custom INC-2026-0042"
    assert payload["text"] == TEXTS["de"]["acknowledged"]


def test_email_template_field_fallbacks() -> None:
    chat_only = user_template("chat", en={"title": "Title {{ incident.id }}", "text": "Text {{ incident.team }}"})
    mail = user_template("mail", en={"subject": "Subject {{ incident.id }}", "body": "Body", "title": "unused"})

    chat_channel, chat_ruleset = with_template("email", chat_only)
    mail_channel, mail_ruleset = with_template("email", mail)
    from_chat = render_message(chat_channel, "payments", make_context(), chat_ruleset).payload
    from_mail = render_message(mail_channel, "payments", make_context(), mail_ruleset).payload

    assert (from_chat["subject"], from_chat["text"].split("\n\n")[0]) == ("Title INC-2026-0042", "Text payments")
    assert (from_mail["subject"], from_mail["text"].split("\n\n")[0]) == ("Subject INC-2026-0042", "Body")


def test_pagerduty_reads_summary_then_title() -> None:
    channel, ruleset = with_template("pagerduty", user_template(en={"title": "PD {{ incident.id }} {{ alert.name }}"}))

    summary = render_message(channel, "payments", make_context(), ruleset).payload["payload"]["summary"]

    assert summary == "PD INC-2026-0042 HighErrorRate"


def test_user_template_variables() -> None:
    text = (
        "{{ event }}|{{ incident.status }}|{{ alerts | length }}|{{ labels.service }}|{{ annotations.summary }}"
        "|{{ settings.locale }}|{{ url }}|{{ now.year }}|{{ owner.team }}|{{ escalation.level }}|{{ incident.age }}"
    )
    channel, ruleset = with_template("webhook", user_template(en={"text": text}))

    payload = render_message(channel, "payments", make_context("escalated"), ruleset).payload

    assert payload["text"] == f"escalated|detected|3|checkout|5xx ratio above 5%|en|{INCIDENT_URL}|2026|payments|2|2 h 5 min"


def test_unknown_variables_render_empty() -> None:
    channel, ruleset = with_template(
        "webhook", user_template(en={"text": "a{{ nope }}b{{ nope.deeper.still }}c{{ label.missing }}d"})
    )

    assert render_message(channel, "payments", make_context(), ruleset).payload["text"] == "abcd"


def test_label_named_like_dict_method() -> None:
    context = make_context()
    context["alerts"][0]["labels"]["items"] = "the items label"
    channel, ruleset = with_template("webhook", user_template(en={"text": "{{ label.items }}"}))

    assert render_message(channel, "payments", context, ruleset).payload["text"] == "the items label"


# ---------------------------------------------------------------- failing templates


FAILING_TEMPLATES = {
    "syntax error": ("{{ incident.id ", "TemplateSyntaxError"),
    "runtime error": ("{{ incident.id() }}", "TypeError"),
    "endless loop": ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "render budget"),
    # Three alerts nested twelve deep: 3**12 iterations, none of which calls or prints anything.
    "nested loops over alerts": ("{% for a in alerts %}" * 12 + "{% endfor %}" * 12, "render budget"),
    "recursion": ("{% macro again() %}{{ again() }}{% endmacro %}{{ again() }}", "RecursionError"),
    "huge string": ("{{ 'x' * 1000000000 }}", "builds more than"),
    "doubling string": (
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "`~`",
    ),
    "huge number": (
        "{% set ns = namespace(n=3) %}{% for i in range(60) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
        "bits",
    ),
    "huge filter argument": ("{{ 'x' | center(1000000000) }}", "exceeds"),
    "wide format": ("{{ '%0999999999d' % 1 }}", "format string"),
}


@pytest.mark.parametrize("case", list(FAILING_TEMPLATES))
def test_failing_template_falls_back(case: str, caplog: pytest.LogCaptureFixture) -> None:
    source, reason = FAILING_TEMPLATES[case]
    channel, ruleset = with_template("slack", user_template("broken", en={"title": source, "text": "kept {{ incident.id }}"}))

    with caplog.at_level(logging.WARNING, logger="irules.notify"):
        payload = render_message(channel, "payments", make_context(), ruleset).payload

    assert payload["blocks"][0]["text"]["text"] == TITLES["en"]["opened"]
    assert payload["blocks"][1]["text"]["text"] == "kept INC-2026-0042"
    records = [record for record in caplog.records if record.name == "irules.notify"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].template == "broken"
    assert records[0].field == "title"
    assert records[0].incident_id == "INC-2026-0042"
    assert reason in records[0].err


def test_render_past_deadline_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "RENDER_TIMEOUT_S", -1.0)

    with pytest.raises(render.TemplateFailed, match="timed out"):
        render.render_text("{% for i in range(3) %}{{ i }}{% endfor %}", {})


def test_oversized_source_rejected() -> None:
    with pytest.raises(render.TemplateFailed, match="at most 20000"):
        render.render_text("x" * 20_001, {})


def test_sandbox_hides_internals() -> None:
    assert render.render_text("{{ ''.__class__ }}{{ cycler.__init__.__globals__ }}", {}) == ""


def test_undeclared_template_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    channel = CHANNELS["webhook"].model_copy(update={"template": "missing"})

    with caplog.at_level(logging.WARNING, logger="irules.notify"):
        payload = render_message(channel, "payments", make_context(), RULESET).payload

    assert payload["title"] == TITLES["en"]["opened"]
    assert [(record.levelno, record.template) for record in caplog.records] == [(logging.WARNING, "missing")]


def test_rendering_leaves_context_unchanged() -> None:
    template = user_template(en={"title": "{{ label.update({'alertname': 'changed'}) }}", "text": "{{ alerts.pop() }}"})
    context = make_context("resolved")
    before = copy.deepcopy(context)

    for kind in KINDS:
        channel, ruleset = with_template(kind, template)
        render_message(channel, "payments", context, ruleset, locale="de")
        render_message(CHANNELS[kind], "payments", context, RULESET, locale="de")

    assert context == before


# ---------------------------------------------------------------- snapshots


class JsonSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "json"


class HtmlSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "html"


@pytest.mark.parametrize(
    ("kind", "event", "locale"),
    [("slack", "opened", "en"), ("slack", "acknowledged", "de"), ("teams", "resolved", "de"), ("pagerduty", "escalated", "en")],
)
def test_message_snapshot(kind: str, event: str, locale: str, snapshot: SnapshotAssertion) -> None:
    outbound = render_for(kind, event, locale)

    assert json.dumps(outbound.to_json(), indent=2, ensure_ascii=False) + "\n" == snapshot(extension_class=JsonSnapshot)


def test_email_html_snapshot(snapshot: SnapshotAssertion) -> None:
    assert render_for("email", "resolved", "de").payload["html"] == snapshot(extension_class=HtmlSnapshot)


@pytest.mark.parametrize("locale", ["en", "de"])
def test_apprise_message_has_title_text_and_link(locale: str) -> None:
    channel = ir.Channel(kind="apprise", target=ir.SecretRef(secret="APPRISE_URL"))
    outbound = render_message(channel, "payments", make_context("opened"), RULESET, locale=locale)
    assert outbound.kind == "apprise"
    assert outbound.secrets == {"url": "APPRISE_URL"}
    assert outbound.url is None
    assert outbound.payload["title"] == TITLES[locale]["opened"]
    assert outbound.payload["text"] == TEXTS[locale]["opened"] + "\n" + INCIDENT_URL


@pytest.mark.parametrize(
    ("locale", "title", "text_start", "summary_start"),
    [
        (
            "en",
            f"Incident INC-2026-0042 escalated: {TITLE}",
            'Escalation step "after 5m unacknowledged page oncall"',
            "[Escalated] ",
        ),
        (
            "de",
            f"Vorfall INC-2026-0042 eskaliert: {TITLE}",
            "Eskalationsschritt „after 5m unacknowledged page oncall“",
            "[Eskaliert] ",
        ),
    ],
)
def test_page_step_without_a_level_names_its_step(locale: str, title: str, text_start: str, summary_start: str) -> None:
    """A `page` or `notify` step does not raise the level, so the message names the step instead of "level 0"."""
    context = make_context("escalated", escalation_level=0)
    context["escalation"] = {"policy": "standard", "level": 0, "step": "after 5m unacknowledged page oncall"}
    sms = render_message(CHANNELS["sms"], "payments", context, RULESET, locale=locale)
    assert sms.payload["Body"].startswith(title + "\n" + text_start)
    page = render_message(CHANNELS["pagerduty"], "payments", context, RULESET, locale=locale)
    assert page.payload["payload"]["summary"].startswith(summary_start + "INC-2026-0042")
    assert "level 0" not in sms.payload["Body"]
    assert "Stufe 0" not in sms.payload["Body"]


def test_pagerduty_summary_does_not_repeat_a_summary_already_in_the_title() -> None:
    context = make_context("opened", title="HighErrorRate: 5xx ratio above 5%")
    page = render_message(CHANNELS["pagerduty"], "payments", context, RULESET)
    assert page.payload["payload"]["summary"] == "INC-2026-0042: HighErrorRate: 5xx ratio above 5%"


# ---------------------------------------------------------------- runbook approval requests

APPROVAL = {
    "id": 17,
    "run": 3,
    "runbook": "rb-002",
    "step": "apply_plan",
    "team": "infrastructure",
    "operation": "terraform '-chdir=/srv/tf; <!channel> *bold*' apply -input=false drift.tfplan",
    "timeout_at": at(12, 26),
    "approve_command": "irules approve 3 apply_plan",
    "deny_command": "irules deny 3 apply_plan",
}


def render_approval(kind: str, locale: str = "en", ruleset: ir.Ruleset = RULESET) -> Outbound:
    context = {**make_context("approval"), "approval": APPROVAL}
    return render_message(CHANNELS[kind], "infrastructure", context, ruleset, locale=locale)


def test_slack_approval_has_approve_and_deny_buttons() -> None:
    payload = render_approval("slack").payload
    actions = next(block for block in payload["blocks"] if block["type"] == "actions")

    assert actions["block_id"] == "approval_actions"
    assert [button["action_id"] for button in actions["elements"]] == ["runbook_approve", "runbook_deny"]
    assert [button["value"] for button in actions["elements"]] == ["17", "17"]
    assert [button["text"]["text"] for button in actions["elements"]] == ["Approve", "Deny"]


def test_slack_approval_shows_operation_escaped() -> None:
    payload = render_approval("slack").payload
    summary = next(block for block in payload["blocks"] if block.get("block_id") == "incident_summary")

    assert payload["text"] == "Approval requested: step apply_plan of runbook rb-002 for incident INC-2026-0042"
    assert "&lt;!channel&gt;" in summary["text"]["text"]
    assert "<!channel>" not in summary["text"]["text"]
    assert "irules approve 3 apply_plan" in summary["text"]["text"]


def test_email_approval_text_in_english() -> None:
    payload = render_approval("email").payload

    assert payload["subject"] == "Approval requested: step apply_plan of runbook rb-002 for incident INC-2026-0042"
    assert (
        "infrastructure is asked to approve step apply_plan of runbook rb-002 (run 3). It will execute exactly:\n"
        f"{APPROVAL['operation']}\n"
        "Approve: irules approve 3 apply_plan\n"
        "Deny: irules deny 3 apply_plan\n"
        "Without a decision by 2026-03-04 12:26 UTC, the step fails."
    ) in payload["text"]


def test_email_approval_text_in_german() -> None:
    payload = render_approval("email", "de").payload

    assert payload["subject"] == "Freigabe angefordert: Schritt apply_plan von Runbook rb-002 für Vorfall INC-2026-0042"
    assert "infrastructure soll Schritt apply_plan von Runbook rb-002 (Lauf 3) freigeben." in payload["text"]
    assert "Ohne Entscheidung bis 04.03.2026, 12:26 UTC schlägt der Schritt fehl." in payload["text"]


def test_approval_ignores_the_channel_template() -> None:
    template = user_template(en={"title": "Custom {{ incident.id }}", "text": "custom body"})
    channel, ruleset = with_template("email", template)
    context = {**make_context("approval"), "approval": APPROVAL}

    payload = render_message(channel, "infrastructure", context, ruleset, locale="en").payload

    assert payload["subject"].startswith("Approval requested: step apply_plan")
    assert "custom body" not in payload["text"]


def test_webhook_approval_document_carries_the_request() -> None:
    document = render_approval("webhook").payload

    assert document["event"] == "approval"
    assert document["approval"]["id"] == 17
    assert document["approval"]["approve_command"] == "irules approve 3 apply_plan"
