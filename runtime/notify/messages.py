"""Render one notification about an incident for one channel, as an `Outbound`.

`render_message` takes the incident context that the planner builds from the
store and returns the channel's payload, ready to be stored in the outbox:

- slack: a `chat.postMessage` body (`text`, `blocks`); for every event but
  `opened` also `root_update`, the incident's first message re-rendered with
  the current status, for `chat.update`.
- teams: an Adaptive Card 1.4 in the `message` envelope of incoming webhooks.
- pagerduty: an Events API v2 event without `routing_key`, which the sender
  adds from the secret named in `secrets["key"]`.
- sms: `{"Body": ...}` for Twilio. The sender reads the account from the
  conventional secrets `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN` and
  `TWILIO_FROM` (the sending number), named in `secrets` as `account_sid`,
  `auth_token` and `from`.
- email: `subject`, a plain `text` part and an `html` part.
- webhook: a JSON document of version "1" with the incident, its alerts and
  the rendered title and text.

Texts come from the channel's `template NAME` when the rules give one and it
defines the field, otherwise from the templates shipped in
`runtime/notify/templates/`, in the message's locale or else English. A
template that fails is logged, and the shipped text is used instead.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from compiler import ir
from runtime.notify.model import Outbound
from runtime.notify.render import (
    Message,
    TemplateFailed,
    as_datetime,
    cut,
    is_web_url,
    mrkdwn_escape,
    render_text,
    shipped_source,
)
from targets import slack_blocks

log = logging.getLogger("irules.notify")

# The conventional names of the Twilio secrets, by the role the SMS sender reads them in.
SMS_SECRETS = {"account_sid": "TWILIO_ACCOUNT_SID", "auth_token": "TWILIO_AUTH_TOKEN", "from": "TWILIO_FROM"}

# Slack cuts top-level text only past 40,000 characters, but it is the notification's preview, so it stays short.
MAX_SLACK_FALLBACK_TEXT = 300
MAX_SLACK_LIST_ITEMS = 20
# Teams rejects messages of more than about 28 KB.
MAX_TEAMS_BYTES = 28_000
MAX_TEAMS_TITLE = 300
MAX_TEAMS_FACT = 300
MAX_TEAMS_ACTIONS = 5
MAX_PAGERDUTY_SUMMARY = 1024
MAX_PAGERDUTY_DEDUP_KEY = 255
MAX_PAGERDUTY_EVENT_BYTES = 512_000
MAX_SMS_UTF16_UNITS = 1600
# Our own limits, so that one long value cannot crowd out the rest of a message.
MAX_EMAIL_SUBJECT = 250
MAX_EMAIL_HTML = 200_000
MAX_ITEM_TEXT = 300
MAX_SIMILAR = 5

# The action ids of the Approve and Deny buttons of approval requests, which the Slack bot reads.
APPROVE_ACTION = "runbook_approve"
DENY_ACTION = "runbook_deny"

_PAGERDUTY_ACTIONS = {"acknowledged": "acknowledge", "resolved": "resolve"}
_PAGERDUTY_SEVERITIES = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


def render_message(
    channel: ir.Channel, receiver: str, context: dict[str, Any], ruleset: ir.Ruleset, locale: str | None = None
) -> Outbound:
    """Render the notification of `context["event"]` for one channel of `receiver`.

    `locale` overrides `settings.locale`. A locale without texts falls back to
    its language (`de-CH` to `de`) and then to English. The payload contains
    only JSON types, so it can be stored as it is.

    Example:
        outbound = render_message(channel, "payments", context, ruleset, locale="de")

    Raises:
        ValueError: the channel kind is not one irules renders.
    """
    builder = _BUILDERS.get(channel.kind)
    if builder is None:
        raise ValueError(f"unknown channel kind {channel.kind!r}; expected one of {', '.join(sorted(_BUILDERS))}")
    message = Message.prepare(channel, receiver, context, ruleset, locale or ruleset.settings.locale)
    return builder(message)


def pagerduty_dedup_key(incident_key: str) -> str:
    """Return the PagerDuty `dedup_key` of an incident: `irules-<id>`, or a SHA-256 digest when that is too long.

    Every event of one incident carries the same key, so PagerDuty updates,
    acknowledges and resolves one alert.
    """
    readable = f"irules-{incident_key}"
    if len(readable) <= MAX_PAGERDUTY_DEDUP_KEY and readable.isprintable():
        return readable
    return "irules-sha256-" + hashlib.sha256(incident_key.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- parts shared by channels


@dataclass(frozen=True, slots=True)
class _Item:
    text: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class _Section:
    """A heading with a list below it: the alerts, the runbooks or similar incidents."""

    heading: str
    items: list[_Item]


def _facts(message: Message) -> list[tuple[str, str, str]]:
    """Return the incident's facts as (key, label, value): severity, status, team, services, owner and the like."""
    incident = message.incident
    view = message.values["incident"]
    labels = message.texts["fields"]
    facts = [
        ("severity", view["severity_name"]),
        ("status", view["status_name"]),
        ("team", incident.get("team") or "–"),
        ("services", ", ".join(incident.get("services") or []) or "–"),
    ]
    owner = message.context.get("owner")
    if owner:
        facts.append(("owner", _owner_text(owner)))
    facts.append(("started", view["started"] or "–"))
    if incident.get("acknowledged_by"):
        facts.append(("acknowledged_by", str(incident["acknowledged_by"])))
    escalation = _escalation_text(message)
    if escalation:
        facts.append(("escalation", escalation))
    return [(key, labels[key], value) for key, value in facts]


def _owner_text(owner: Mapping[str, Any]) -> str:
    members = [str(member) for member in owner.get("members") or []]
    listed = ", ".join(members[:5]) + (", …" if len(members) > 5 else "")
    return f"{owner.get('team') or '–'}: {listed}" if listed else str(owner.get("team") or "–")


def _escalation_text(message: Message) -> str:
    escalation = message.context.get("escalation") or {}
    level = escalation.get("level") or message.incident.get("escalation_level") or 0
    if not level:
        return ""
    text = message.texts["level"].format(level=level)
    return f"{text} · {escalation['policy']}" if escalation.get("policy") else text


def _sections(message: Message, alert_limit: int | None = None) -> list[_Section]:
    """Return the alerts, runbooks and similar incidents, each only when there are any."""
    texts = message.texts
    sections = []
    alerts = list(message.context.get("alerts") or [])
    if alerts:
        incident = message.incident
        heading = texts["alerts"].format(
            firing=incident.get("firing_count") or 0, total=incident.get("alert_count") or len(alerts)
        )
        listed = alerts if alert_limit is None else alerts[:alert_limit]
        items = [_Item(_alert_text(alert, texts)) for alert in listed]
        if len(listed) < len(alerts):
            items.append(_Item(texts["more"].format(count=len(alerts) - len(listed))))
        sections.append(_Section(heading, items))
    runbooks = list(_runbook_items(message))
    if runbooks:
        sections.append(_Section(texts["runbooks"], runbooks))
    similar = [_similar_item(message, entry) for entry in list(message.context.get("similar") or [])[:MAX_SIMILAR]]
    if similar:
        sections.append(_Section(texts["similar"], similar))
    return sections


def _alert_text(alert: Mapping[str, Any], texts: Mapping[str, Any]) -> str:
    labels = alert.get("labels") or {}
    annotations = alert.get("annotations") or {}
    name = alert.get("name") or labels.get("alertname") or "?"
    status = texts["alert_statuses"].get(alert.get("status"), str(alert.get("status") or ""))
    summary = annotations.get("summary") or annotations.get("description") or ""
    return cut(f"{name} ({status})" + (f": {summary}" if summary else ""), MAX_ITEM_TEXT)


def _runbook_items(message: Message) -> Iterator[_Item]:
    for service in message.context.get("services") or []:
        if is_web_url(service.get("runbook_url")):
            yield _Item(cut(str(service.get("name") or service["runbook_url"]), MAX_ITEM_TEXT), service["runbook_url"])
    for runbook in message.context.get("runbooks") or []:
        description = runbook.get("description")
        yield _Item(cut(f"{runbook.get('name')}: {description}" if description else str(runbook.get("name")), MAX_ITEM_TEXT))


def _similar_item(message: Message, entry: Mapping[str, Any]) -> _Item:
    text = str(entry.get("id"))
    if entry.get("title"):
        text += f": {entry['title']}"
    resolved = message.time(entry.get("resolved_at"))
    if resolved:
        text += f" ({message.texts['similar_resolved'].format(time=resolved)})"
    if entry.get("resolution"):
        text += f" – {entry['resolution']}"
    if entry.get("runbooks"):
        text += f" · {message.texts['runbooks']}: {', '.join(str(name) for name in entry['runbooks'])}"
    return _Item(cut(text, MAX_ITEM_TEXT))


def _endpoint(value: str | ir.SecretRef | None, role: str) -> tuple[str | None, dict[str, str]]:
    """Split a channel option into a plain value and the secrets: a `SecretRef` goes to `secrets[role]` by name."""
    if isinstance(value, ir.SecretRef):
        return None, {role: value.secret}
    return value, {}


def _one_line(text: str) -> str:
    """Return `text` with every run of whitespace, line breaks included, as one space."""
    return " ".join(text.split())


def _jsonable(value: Any) -> Any:
    """Return `value` with datetimes as ISO 8601 text, tuples and sets as lists and unknown objects as text."""
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


# ---------------------------------------------------------------- slack


def _slack(message: Message) -> Outbound:
    payload = _slack_message(message)
    if message.event != "opened":
        payload["root_update"] = _slack_message(message.as_root())
    slack = message.ruleset.slack
    if slack is not None and slack.token is not None:
        url, secrets = None, {"token": slack.token.secret}
    else:
        url, secrets = _endpoint(message.channel.url or message.ruleset.settings.slack_api_url, "url")
    target, target_secrets = _endpoint(message.channel.target, "target")
    return Outbound("slack", payload=payload, target=target, url=url, secrets={**secrets, **target_secrets})


def _slack_message(message: Message) -> dict[str, Any]:
    """Return a `chat.postMessage` body that keeps every Block Kit limit whatever the alert data."""
    title = _one_line(message.field("title")) or message.incident["id"]
    text = message.field("text", escape="mrkdwn")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(title, slack_blocks.MAX_HEADER_TEXT), "emoji": True}}
    ]
    if text:
        blocks.append(_mrkdwn_section(text, "incident_summary"))
    blocks.append({"type": "section", "block_id": "incident_fields", "fields": _slack_fields(message)})
    for section in _sections(message, alert_limit=MAX_SLACK_LIST_ITEMS):
        blocks.append(_mrkdwn_section(_slack_list(section), None))
    if message.event == "approval":
        blocks.append({"type": "actions", "block_id": "approval_actions", "elements": _slack_approval_buttons(message)})
    elif message.values["incident"]["open"]:
        blocks.append({"type": "actions", "block_id": "incident_actions", "elements": _slack_buttons(message)})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_link(message)}]})
    assert len(blocks) <= slack_blocks.MAX_BLOCKS, "a message has a fixed set of blocks, far fewer than Slack's limit"
    return {
        "text": _cut_mrkdwn(mrkdwn_escape(title), MAX_SLACK_FALLBACK_TEXT),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _mrkdwn_section(text: str, block_id: str | None) -> dict[str, Any]:
    section: dict[str, Any] = {"type": "section"}
    if block_id:
        section["block_id"] = block_id
    section["text"] = {"type": "mrkdwn", "text": _cut_mrkdwn(text, slack_blocks.MAX_SECTION_TEXT)}
    return section


def _slack_fields(message: Message) -> list[dict[str, str]]:
    unix = message.values["incident"]["started_unix"]
    fields = []
    for key, label, value in _facts(message)[: slack_blocks.MAX_FIELDS]:
        limit = slack_blocks.MAX_FIELD_TEXT - len(label) - 3
        escaped = _cut_mrkdwn(mrkdwn_escape(value), limit)
        if key == "started" and unix is not None:
            # Slack shows the time in the reader's zone, and the formatted text where it cannot.
            escaped = f"<!date^{unix}^{{date_short_pretty}} {{time}}|{_cut_mrkdwn(escaped, 200)}>"
        fields.append({"type": "mrkdwn", "text": f"*{label}*\n{escaped}"})
    return fields


def _slack_list(section: _Section) -> str:
    """Return a section as mrkdwn lines, leaving out items past Slack's section limit."""
    lines = [f"*{mrkdwn_escape(section.heading)}*"]
    size = len(lines[0])
    for item in section.items:
        text = mrkdwn_escape(item.text)
        line = f"• <{_slack_url(item.url)}|{text}>" if item.url else f"• {text}"
        if size + 1 + len(line) > slack_blocks.MAX_SECTION_TEXT - 2:
            lines.append("• …")
            break
        lines.append(line)
        size += 1 + len(line)
    return "\n".join(lines)


def _slack_buttons(message: Message) -> list[dict[str, Any]]:
    texts = slack_blocks.locale_texts(message.language)
    incident_id = message.incident["id"][: slack_blocks.MAX_BUTTON_VALUE]
    buttons = []
    if not message.incident.get("acknowledged_at"):
        buttons.append(
            {
                "type": "button",
                "action_id": slack_blocks.ACKNOWLEDGE,
                "text": {"type": "plain_text", "text": texts["acknowledge"]},
                "style": "primary",
                "value": incident_id,
            }
        )
    buttons.append(
        {
            "type": "button",
            "action_id": slack_blocks.START_RESPONSE,
            "text": {"type": "plain_text", "text": texts["start_response"]},
            "value": incident_id,
            "confirm": {
                "title": {"type": "plain_text", "text": texts["confirm_title"]},
                "text": {"type": "mrkdwn", "text": texts["confirm_text"]},
                "confirm": {"type": "plain_text", "text": texts["confirm"]},
                "deny": {"type": "plain_text", "text": texts["deny"]},
            },
        }
    )
    return buttons


def _slack_approval_buttons(message: Message) -> list[dict[str, Any]]:
    """Return Approve and Deny buttons whose value is the approval's id, which the Slack bot decides on a click."""
    value = str(message.context["approval"]["id"])
    return [
        {
            "type": "button",
            "action_id": APPROVE_ACTION,
            "text": {"type": "plain_text", "text": message.texts["approve"]},
            "style": "primary",
            "value": value,
        },
        {
            "type": "button",
            "action_id": DENY_ACTION,
            "text": {"type": "plain_text", "text": message.texts["deny"]},
            "style": "danger",
            "value": value,
        },
    ]


def _slack_link(message: Message) -> str:
    label = message.texts["incident"]
    incident_id = mrkdwn_escape(message.incident["id"])
    if message.url is None:
        return _cut_mrkdwn(f"{label} {incident_id}", slack_blocks.MAX_CONTEXT_TEXT)
    return _cut_mrkdwn(f"{label} <{_slack_url(message.url)}|{incident_id}>", slack_blocks.MAX_CONTEXT_TEXT)


def _slack_url(url: str) -> str:
    """Percent-encode the characters that would end a mrkdwn link early, and cut the URL to Slack's limit."""
    for character in "<>| ":
        url = url.replace(character, f"%{ord(character):02X}")
    return url[:3000]


def _cut_mrkdwn(text: str, limit: int) -> str:
    """Cut escaped mrkdwn to `limit` characters without leaving half an `&amp;` or half a `<link>` at the end."""
    if len(text) <= limit:
        return text
    prefix = text[: limit - 1]
    ampersand = prefix.rfind("&", max(len(prefix) - 5, 0))
    if ampersand != -1 and ";" not in prefix[ampersand:]:
        prefix = prefix[:ampersand]
    if prefix.rfind("<") > prefix.rfind(">"):
        prefix = prefix[: prefix.rfind("<")]
    return prefix.rstrip() + "…"


# ---------------------------------------------------------------- teams


def _teams(message: Message) -> Outbound:
    url, secrets = _endpoint(message.channel.url or message.channel.target, "url")
    return Outbound("teams", payload=_teams_message(message), url=url, secrets=secrets)


def _teams_message(message: Message) -> dict[str, Any]:
    """Return the card with as many alerts and extras as fit in Teams' size limit of about 28 KB."""
    alert_count = len(message.context.get("alerts") or [])
    attempts = [(limit, True, None) for limit in range(alert_count, -1, -1)]
    attempts += [(0, False, None), (0, False, 1_000), (0, False, 200)]
    for alert_limit, extras, text_limit in attempts:
        envelope = _teams_envelope(_teams_card(message, alert_limit, extras, text_limit))
        if _json_size(envelope) <= MAX_TEAMS_BYTES:
            return envelope
    # NOTE: the last attempt keeps the title, 200 characters of text, facts of 300 characters and the
    # action URLs, so only URLs from the rules of several kilobytes can still make it too large.
    return envelope


def _teams_envelope(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}],
    }


def _teams_card(message: Message, alert_limit: int, extras: bool, text_limit: int | None) -> dict[str, Any]:
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": _teams_body(message, alert_limit, extras, text_limit),
    }
    actions = _teams_actions(message)
    if actions:
        card["actions"] = actions
    card["msteams"] = {"width": "Full"}
    return card


def _teams_body(message: Message, alert_limit: int, extras: bool, text_limit: int | None) -> list[dict[str, Any]]:
    # NOTE: TextBlocks render a Markdown subset and alert data is not escaped for it, so an
    # annotation such as `[text](https://example.com)` shows as a link.
    title = _one_line(message.field("title")) or message.incident["id"]
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": cut(title, MAX_TEAMS_TITLE),
            "size": "Large",
            "weight": "Bolder",
            "color": _teams_color(message),
            "wrap": True,
        }
    ]

    text = message.field("text")
    if text_limit is not None:
        text = cut(text, text_limit)
    # One block per line, because Teams clients differ in how they show a single line break.
    body += [{"type": "TextBlock", "text": line, "wrap": True} for line in text.splitlines() if line.strip()]

    facts = [{"title": label, "value": cut(value, MAX_TEAMS_FACT)} for _, label, value in _facts(message)]
    body.append({"type": "FactSet", "facts": facts})

    for section in _sections(message, alert_limit) if extras else []:
        body.append({"type": "TextBlock", "text": section.heading, "weight": "Bolder", "wrap": True, "spacing": "Medium"})
        body += [{"type": "TextBlock", "text": _teams_item(item), "wrap": True, "spacing": "None"} for item in section.items]
    return body


def _teams_actions(message: Message) -> list[dict[str, Any]]:
    actions = []
    if message.url:
        actions.append({"type": "Action.OpenUrl", "title": message.texts["open_incident"], "url": message.url})
    for item in _runbook_items(message):
        if item.url and len(actions) < MAX_TEAMS_ACTIONS:
            actions.append({"type": "Action.OpenUrl", "title": cut(f"Runbook: {item.text}", 100), "url": item.url})
    return actions


def _teams_item(item: _Item) -> str:
    # Teams turns a bare URL into a link, while a Markdown link would break on a `]` in the text.
    return f"- {item.text}: {item.url}" if item.url else f"- {item.text}"


def _teams_color(message: Message) -> str:
    view = message.values["incident"]
    if message.event == "resolved" or not view["open"]:
        return "Good"
    if message.event == "acknowledged":
        return "Accent"
    if message.event == "escalated" or message.incident.get("severity") in ("critical", "high"):
        return "Attention"
    return "Warning" if message.incident.get("severity") == "medium" else "Default"


# ---------------------------------------------------------------- pagerduty


def _pagerduty(message: Message) -> Outbound:
    action = _PAGERDUTY_ACTIONS.get(message.event, "trigger")
    event: dict[str, Any] = {"event_action": action, "dedup_key": pagerduty_dedup_key(message.incident["id"])}
    if action == "trigger":
        event.update(_pagerduty_trigger(message))
        if _json_size(event) > MAX_PAGERDUTY_EVENT_BYTES:
            # PagerDuty rejects events over 512 KB, so the details go, as Alertmanager does it.
            del event["payload"]["custom_details"]
    key = message.channel.key
    return Outbound("pagerduty", payload=event, secrets={"key": key.secret} if key else {})


def _pagerduty_trigger(message: Message) -> dict[str, Any]:
    incident = message.incident
    first = message.values["alert"]
    labels = first.get("labels") or {}
    payload: dict[str, Any] = {
        "summary": cut(_one_line(message.field("summary")) or incident["id"], MAX_PAGERDUTY_SUMMARY),
        "source": str(labels.get("instance") or labels.get("host") or message.values["incident"]["service"] or "irules"),
        "severity": _PAGERDUTY_SEVERITIES.get(incident.get("severity"), "info"),
    }
    created = as_datetime(incident.get("created_at"))
    if created:
        payload["timestamp"] = created.isoformat()
    optional = {"component": message.values["incident"]["service"], "group": incident.get("team"), "class": first.get("name")}
    payload.update({key: str(value) for key, value in optional.items() if value})
    payload["custom_details"] = _pagerduty_details(message)
    body: dict[str, Any] = {"payload": payload, "client": "irules"}
    if message.url:
        body["client_url"] = message.url
    links = [{"href": message.url, "text": f"{message.texts['incident']} {incident['id']}"}] if message.url else []
    links += [{"href": item.url, "text": f"Runbook: {item.text}"} for item in _runbook_items(message) if item.url]
    if links:
        body["links"] = links
    return body


def _pagerduty_details(message: Message) -> dict[str, Any]:
    """Return the incident's fields for `custom_details`, with its PagerDuty priority, which events cannot set."""
    incident = message.incident
    details = {
        "incident": incident["id"],
        "event": message.event,
        "status": incident.get("status"),
        "severity": incident.get("severity"),
        "priority": message.ruleset.pagerduty.priorities.get(incident.get("severity") or ""),
        "team": incident.get("team"),
        "services": list(incident.get("services") or []),
        "receiver": message.receiver,
        "alert_count": incident.get("alert_count"),
        "firing_count": incident.get("firing_count"),
        "escalation_level": incident.get("escalation_level"),
        "acknowledged_by": incident.get("acknowledged_by"),
        "url": message.url,
        "alerts": [
            {
                "name": alert.get("name"),
                "status": alert.get("status"),
                "severity": alert.get("severity"),
                "starts_at": alert.get("starts_at"),
                "labels": alert.get("labels") or {},
                "summary": cut(str((alert.get("annotations") or {}).get("summary") or ""), 1_000),
            }
            for alert in message.context.get("alerts") or []
        ],
    }
    return _jsonable({key: value for key, value in details.items() if value is not None})


# ---------------------------------------------------------------- sms, email and webhooks


def _sms(message: Message) -> Outbound:
    parts = [message.field("title"), message.field("text"), message.url or ""]
    body = cut_utf16("\n".join(part for part in parts if part), MAX_SMS_UTF16_UNITS)
    target, secrets = _endpoint(message.channel.target, "target")
    return Outbound("sms", payload={"Body": body}, target=target, secrets={**SMS_SECRETS, **secrets})


def cut_utf16(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` UTF-16 code units, as Twilio counts, never inside a character."""
    if _utf16_units(text) <= limit:
        return text
    characters: list[str] = []
    used = 1  # the ellipsis
    for character in text:
        width = 2 if ord(character) > 0xFFFF else 1
        if used + width > limit:
            break
        characters.append(character)
        used += width
    return "".join(characters).rstrip() + "…"


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _email(message: Message) -> Outbound:
    subject = cut(_one_line(message.field("subject")), MAX_EMAIL_SUBJECT)
    body = message.field("body")
    facts = [(label, value) for _, label, value in _facts(message)]
    sections = _sections(message)
    text = _email_text(message, body, facts, sections)
    payload = {"subject": subject, "text": text, "html": _email_html(message, subject, body, facts, sections, text)}
    target, secrets = _endpoint(message.channel.target, "target")
    smtp = message.ruleset.settings.smtp
    if smtp is not None and smtp.password is not None:
        secrets["password"] = smtp.password.secret
    return Outbound("email", payload=payload, target=target, secrets=secrets)


def _email_text(message: Message, body: str, facts: list[tuple[str, str]], sections: list[_Section]) -> str:
    width = max(len(label) for label, _ in facts)
    parts = [body, "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in facts)]
    for section in sections:
        lines = [f"- {item.text}" + (f" <{item.url}>" if item.url else "") for item in section.items]
        parts.append("\n".join([section.heading, *lines]))
    if message.url:
        parts.append(f"{message.texts['open_incident']}: {message.url}")
    return "\n\n".join(part for part in parts if part) + "\n"


def _email_html(
    message: Message, subject: str, body: str, facts: list[tuple[str, str]], sections: list[_Section], text: str
) -> str:
    values = {
        "lang": message.language,
        "subject": subject,
        "paragraphs": [paragraph.splitlines() for paragraph in body.split("\n\n") if paragraph.strip()],
        "facts": facts,
        "sections": [
            {"heading": section.heading, "items": [dataclasses.asdict(item) for item in section.items]} for section in sections
        ],
        "url": message.url,
        "link_text": message.texts["open_incident"],
    }
    source = shipped_source("email.html")
    assert source is not None, "the e-mail layout is shipped with the package"
    try:
        return render_text(source, values, escape="html", limit=MAX_EMAIL_HTML) + "\n"
    except TemplateFailed as error:
        log.error("e-mail layout failed for incident %s: %s", message.incident["id"], error)
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f"<!DOCTYPE html>\n<html><body><pre>{escaped}</pre></body></html>\n"


def _webhook(message: Message) -> Outbound:
    context = message.context
    document = {
        "version": "1",
        "event": message.event,
        "receiver": message.receiver,
        "locale": message.locales[0],
        "title": message.field("title"),
        "text": message.field("text"),
        "incident": {**message.incident, "url": message.url},
        "alerts": list(context.get("alerts") or []),
        "services": list(context.get("services") or []),
        "owner": context.get("owner"),
        "runbooks": list(context.get("runbooks") or []),
        "similar": list(context.get("similar") or []),
        "escalation": context.get("escalation"),
        "approval": context.get("approval"),
        "sent_at": message.values["now"],
    }
    url, secrets = _endpoint(message.channel.url or message.channel.target, "url")
    return Outbound("webhook", payload=_jsonable(document), url=url, secrets=secrets)


def _apprise(message: Message) -> Outbound:
    parts = [message.field("text"), message.url or ""]
    payload = {"title": _one_line(message.field("title")), "text": "\n".join(part for part in parts if part)}
    url, secrets = _endpoint(message.channel.url or message.channel.target, "url")
    return Outbound("apprise", payload=payload, url=url, secrets=secrets)


_BUILDERS = {
    "slack": _slack,
    "teams": _teams,
    "pagerduty": _pagerduty,
    "sms": _sms,
    "email": _email,
    "webhook": _webhook,
    "apprise": _apprise,
}
