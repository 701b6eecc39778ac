"""Render `slack-blocks.json`: the Block Kit incident message the daemon posts, in English and German.

The document contains one complete `chat.postMessage` body per locale under
`messages`. Every string in it is a Jinja2 template. The daemon renders each
string leaf with `jinja2.sandbox.SandboxedEnvironment` (autoescaping off),
with only the `incident` mapping described under `variables` as context, and
then serialises the result as JSON. Strings without template syntax (action
ids, styles, button and confirm dialog texts) render to themselves.

Alert data is escaped for mrkdwn (`&`, `<`, `>`) where it lands in mrkdwn text,
and every text with alert data is cut to Slack's limit, so a long title cannot
make Slack reject the message. Limits are from Slack's Block Kit reference
(docs.slack.dev/reference/block-kit), checked against python-slack-sdk's
`slack_sdk/models/blocks`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from compiler import ir
from compiler.errors import TargetError
from targets.header import header_lines

LOCALES = ("en", "de")

ACKNOWLEDGE = "incident_acknowledge"
START_RESPONSE = "incident_start_response"

# Slack's Block Kit limits, in characters or items.
MAX_BLOCKS = 50
MAX_BLOCK_ID = 255
MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_ACTION_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_CONTEXT_TEXT = 3000
MAX_BUTTON_TEXT = 75
MAX_ACTION_ID = 255
MAX_BUTTON_VALUE = 2000
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30

# The context the daemon passes: `incident` with these keys.
VARIABLES = {
    "incident.id": "incident id, such as INC-0042",
    "incident.title": "short title, usually the alert name",
    "incident.summary": "one-line summary, usually the alert's summary annotation",
    "incident.severity": "severity level: critical, high, medium or low",
    "incident.status": "firing, acknowledged or resolved",
    "incident.team": "owning team",
    "incident.service": "affected service; may be empty",
    "incident.started_unix": "start time in Unix seconds, formatted by Slack in the reader's time zone",
    "incident.started": "start time as text, shown where Slack cannot format dates",
}

# Locale texts. Keys of `severities` and `statuses` are the values the daemon passes.
_TEXTS: dict[str, dict[str, Any]] = {
    "en": {
        "severities": {"critical": "CRITICAL", "high": "HIGH", "medium": "MEDIUM", "low": "LOW"},
        "statuses": {"firing": "Firing", "acknowledged": "Acknowledged", "resolved": "Resolved"},
        "fields": {"team": "Team", "service": "Service", "severity": "Severity", "status": "Status", "started": "Started"},
        "since": "since",
        "incident": "Incident",
        "acknowledge": "Acknowledge",
        "start_response": "Start response",
        "confirm_title": "Start the incident response?",
        "confirm_text": "This opens a response channel, pages the on-call responder of the owning team "
        "and starts the approved runbooks for this incident.",
        "confirm": "Start response",
        "deny": "Cancel",
    },
    "de": {
        "severities": {"critical": "KRITISCH", "high": "HOCH", "medium": "MITTEL", "low": "NIEDRIG"},
        "statuses": {"firing": "Ausgelöst", "acknowledged": "Bestätigt", "resolved": "Behoben"},
        "fields": {"team": "Team", "service": "Dienst", "severity": "Schweregrad", "status": "Status", "started": "Beginn"},
        "since": "seit",
        "incident": "Vorfall",
        "acknowledge": "Bestätigen",
        "start_response": "Reaktion starten",
        "confirm_title": "Vorfallreaktion starten?",
        "confirm_text": "Damit wird ein Reaktionskanal geöffnet, die Rufbereitschaft des zuständigen Teams "
        "alarmiert und die freigegebenen Runbooks für diesen Vorfall gestartet.",
        "confirm": "Reaktion starten",
        "deny": "Abbrechen",
    },
}

_TEMPLATE_MARKERS = ("{{", "{%", "{#")


def locale_texts(locale: str) -> dict[str, Any]:
    """Return a copy of the fixed texts of `locale` (`en` or `de`): field names, button and confirm dialog texts.

    The daemon's notification renderer shows the same words as the compiled message.
    """
    return copy.deepcopy(_TEXTS[locale])


@dataclass(frozen=True, slots=True)
class BlocksProblem:
    """One violation of Slack's Block Kit rules or one template that does not compile, at a JSON pointer."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer}: {self.message}"


def render(ruleset: ir.Ruleset) -> str:
    """Return the message templates as JSON text with sorted keys.

    Example:
        templates = json.loads(render(ruleset))["messages"]["de"]

    Raises:
        TargetError: the project declares no `slack` app, a template does not compile,
            or a static text breaks one of Slack's Block Kit limits.
    """
    if ruleset.slack is None:
        raise TargetError("the project declares no `slack` app, so there are no Slack messages to generate")
    messages = {locale: message(locale, ruleset.settings.incident_url) for locale in LOCALES}
    problems = validate(messages)
    if problems:
        raise TargetError("invalid Slack message templates: " + "; ".join(str(problem) for problem in problems))
    default_locale = ruleset.settings.locale if ruleset.settings.locale in LOCALES else "en"
    document = {
        "_generated": header_lines(ruleset),
        "channel": ruleset.slack.channel,
        "default_locale": default_locale,
        "messages": messages,
        "variables": VARIABLES,
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def message(locale: str, incident_url: str | None) -> dict[str, Any]:
    """Return the `chat.postMessage` body of one locale, with a Jinja2 template in every text."""
    texts = _TEXTS[locale]
    severity = _lookup(texts["severities"], "incident.severity")
    status = _lookup(texts["statuses"], "incident.status")
    header = f"{{{{ {severity} }}}} · {{{{ incident.id }}}} · {{{{ incident.title }}}}"
    summary = f"*{_mrkdwn('incident.title')}* · {_mrkdwn('incident.summary')}"
    fields = {
        "team": _mrkdwn("incident.team"),
        "service": _mrkdwn('incident.service or "–"'),
        "severity": f"{{{{ {severity} }}}}",
        "status": f"{{{{ {status} }}}}",
        "started": f"<!date^{{{{ incident.started_unix }}}}^{{date_short_pretty}} {{time}}|{_mrkdwn('incident.started')}>",
    }
    return {
        "text": _bounded(f"[{{{{ {severity} }}}}] {{{{ incident.id }}}} {{{{ incident.title }}}}", MAX_HEADER_TEXT),
        "unfurl_links": False,
        "unfurl_media": False,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _bounded(header, MAX_HEADER_TEXT), "emoji": True}},
            {
                "type": "section",
                "block_id": "incident_summary",
                "text": {"type": "mrkdwn", "text": _bounded(summary, MAX_SECTION_TEXT)},
            },
            {
                "type": "section",
                "block_id": "incident_fields",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{label}*\n" + _bounded(fields[key], MAX_FIELD_TEXT - len(label) - 3)}
                    for key, label in texts["fields"].items()
                ],
            },
            {"type": "actions", "block_id": "incident_actions", "elements": _buttons(texts)},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _bounded(_incident_link(texts, incident_url), MAX_CONTEXT_TEXT)}],
            },
        ],
    }


def _buttons(texts: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "type": "button",
            "action_id": ACKNOWLEDGE,
            "text": {"type": "plain_text", "text": texts["acknowledge"]},
            "style": "primary",
            "value": "{{ incident.id }}",
        },
        {
            "type": "button",
            "action_id": START_RESPONSE,
            "text": {"type": "plain_text", "text": texts["start_response"]},
            "value": "{{ incident.id }}",
            "confirm": {
                "title": {"type": "plain_text", "text": texts["confirm_title"]},
                "text": {"type": "mrkdwn", "text": texts["confirm_text"]},
                "confirm": {"type": "plain_text", "text": texts["confirm"]},
                "deny": {"type": "plain_text", "text": texts["deny"]},
            },
        },
    ]


def _incident_link(texts: dict[str, Any], incident_url: str | None) -> str:
    label = texts["incident"]
    if incident_url is None:
        return f"{label} {_mrkdwn('incident.id')}"
    # NOTE: incident pages are assumed to live at `<incident_url>/incidents/<id>`.
    # Braces and mrkdwn delimiters are percent-encoded, so the URL can neither
    # open a Jinja2 tag nor end the Slack link early.
    base = incident_url.rstrip("/")
    for character in "{}<>|":
        base = base.replace(character, f"%{ord(character):02X}")
    return f"{label} <{base}/incidents/{{{{ incident.id | urlencode }}}}|{_mrkdwn('incident.id')}>"


def _mrkdwn(expression: str) -> str:
    """Return a Jinja2 output tag that escapes the three characters Slack's mrkdwn reserves."""
    return f'{{{{ ({expression}) | string | replace("&", "&amp;") | replace("<", "&lt;") | replace(">", "&gt;") }}}}'


def _lookup(mapping: dict[str, str], expression: str) -> str:
    """Return a Jinja2 expression that translates `expression` through `mapping`, keeping unknown values."""
    return f"{json.dumps(mapping, ensure_ascii=False, sort_keys=True)}.get({expression}, {expression})"


def _bounded(template: str, limit: int) -> str:
    """Wrap `template` so its output has at most `limit` characters, ending with an ellipsis when cut."""
    return f'{{% filter truncate({limit}, true, "…", 0) %}}{template}{{% endfilter %}}'


def validate(messages: dict[str, dict[str, Any]]) -> list[BlocksProblem]:
    """Return every template that does not compile and every static text over Slack's limits, or an empty list."""
    problems: list[BlocksProblem] = []
    environment = SandboxedEnvironment()
    for locale, body in messages.items():
        pointer = f"/messages/{locale}"
        for path, text in _strings(body, pointer):
            try:
                environment.parse(text)
            except jinja2.TemplateSyntaxError as error:
                problems.append(BlocksProblem(path, f"invalid Jinja2 template: {error.message} on line {error.lineno}"))
        _check_blocks(body.get("blocks", []), f"{pointer}/blocks", problems)
    return problems


def _strings(value: Any, pointer: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield pointer, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{pointer}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{pointer}/{index}")


def _check_blocks(blocks: list[dict[str, Any]], pointer: str, problems: list[BlocksProblem]) -> None:
    _count(problems, pointer, blocks, MAX_BLOCKS)
    for index, block in enumerate(blocks):
        block_pointer = f"{pointer}/{index}"
        _length(problems, f"{block_pointer}/block_id", block.get("block_id"), MAX_BLOCK_ID)
        kind = block.get("type")
        if kind == "header":
            _length(problems, f"{block_pointer}/text/text", block["text"]["text"], MAX_HEADER_TEXT)
        elif kind == "section":
            _check_section(block, block_pointer, problems)
        elif kind == "actions":
            _count(problems, f"{block_pointer}/elements", block["elements"], MAX_ACTION_ELEMENTS)
            for position, element in enumerate(block["elements"]):
                _check_button(element, f"{block_pointer}/elements/{position}", problems)
        elif kind == "context":
            _count(problems, f"{block_pointer}/elements", block["elements"], MAX_CONTEXT_ELEMENTS)
            for position, element in enumerate(block["elements"]):
                _length(problems, f"{block_pointer}/elements/{position}/text", element.get("text"), MAX_CONTEXT_TEXT)


def _check_section(block: dict[str, Any], pointer: str, problems: list[BlocksProblem]) -> None:
    if "text" in block:
        _length(problems, f"{pointer}/text/text", block["text"]["text"], MAX_SECTION_TEXT)
    fields = block.get("fields", [])
    _count(problems, f"{pointer}/fields", fields, MAX_FIELDS)
    for index, field in enumerate(fields):
        _length(problems, f"{pointer}/fields/{index}/text", field["text"], MAX_FIELD_TEXT)


def _check_button(button: dict[str, Any], pointer: str, problems: list[BlocksProblem]) -> None:
    _length(problems, f"{pointer}/text/text", button["text"]["text"], MAX_BUTTON_TEXT)
    _length(problems, f"{pointer}/action_id", button.get("action_id"), MAX_ACTION_ID)
    _length(problems, f"{pointer}/value", button.get("value"), MAX_BUTTON_VALUE)
    confirm = button.get("confirm")
    if confirm is None:
        return
    _length(problems, f"{pointer}/confirm/title/text", confirm["title"]["text"], MAX_CONFIRM_TITLE)
    _length(problems, f"{pointer}/confirm/text/text", confirm["text"]["text"], MAX_CONFIRM_TEXT)
    _length(problems, f"{pointer}/confirm/confirm/text", confirm["confirm"]["text"], MAX_CONFIRM_BUTTON)
    _length(problems, f"{pointer}/confirm/deny/text", confirm["deny"]["text"], MAX_CONFIRM_BUTTON)


def _count(problems: list[BlocksProblem], pointer: str, items: list[Any], limit: int) -> None:
    if len(items) > limit:
        problems.append(BlocksProblem(pointer, f"has {len(items)} items; Slack allows at most {limit}"))


def _length(problems: list[BlocksProblem], pointer: str, text: str | None, limit: int) -> None:
    """Check a static text against `limit`, skipping templates because `_bounded` cuts their output."""
    if text is None or any(marker in text for marker in _TEMPLATE_MARKERS):
        return
    if not text:
        problems.append(BlocksProblem(pointer, "is empty; Slack requires at least one character"))
    elif len(text) > limit:
        problems.append(BlocksProblem(pointer, f"has {len(text)} characters; Slack allows at most {limit}"))
