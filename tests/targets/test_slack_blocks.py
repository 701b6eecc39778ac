"""The Slack message templates: they compile in the sandbox, render valid Block Kit, and keep Slack's limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from compiler import ir
from compiler.api import check_text
from compiler.errors import TargetError
from targets import slack_blocks

SAMPLE = {
    "id": "INC-0042",
    "title": "HighErrorRate",
    "summary": "5xx ratio above 5% on checkout-api <b> & co",
    "severity": "critical",
    "status": "firing",
    "team": "payments",
    "service": "checkout-api",
    "started_unix": 1715678467,
    "started": "2024-05-14 09:21 UTC",
}


def _ruleset(
    settings: str = 'settings { daemon_url "https://irules.example.com" incident_url "https://incidents.example.com/" }',
) -> ir.Ruleset:
    source = (
        f"{settings}\n"
        'slack { app_name "Ops" channel "#incidents" }\n'
        'receiver chat { webhook "https://hooks.example.com/x" }\n'
        "route { receiver chat }\n"
    )
    result = check_text(source, "x.irules")
    assert not result.has_errors, [item.message for item in result.diagnostics]
    return result.ruleset()


def _render_strings(value: Any, environment: SandboxedEnvironment, incident: dict[str, Any]) -> Any:
    """Render every string leaf the way the daemon does: sandboxed, with only the incident as context."""
    if isinstance(value, str):
        return environment.from_string(value).render(incident=incident)
    if isinstance(value, dict):
        return {key: _render_strings(item, environment, incident) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_strings(item, environment, incident) for item in value]
    return value


def _rendered(locale: str, incident: dict[str, Any] | None = None) -> dict[str, Any]:
    document = json.loads(slack_blocks.render(_ruleset()))
    environment = SandboxedEnvironment(undefined=StrictUndefined)
    return _render_strings(document["messages"][locale], environment, incident or SAMPLE)


def _block(message: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(block for block in message["blocks"] if block["type"] == kind)


@pytest.mark.parametrize("locale", ["en", "de"])
def test_rendered_message_keeps_limits(locale: str) -> None:
    message = _rendered(locale)
    assert slack_blocks.validate({locale: message}) == []
    assert len(_block(message, "header")["text"]["text"]) <= slack_blocks.MAX_HEADER_TEXT
    assert len(message["blocks"][2]["fields"]) == 5
    assert len(_block(message, "actions")["elements"]) <= slack_blocks.MAX_ACTION_ELEMENTS


@pytest.mark.parametrize("locale", ["en", "de"])
def test_rendered_buttons_have_action_ids(locale: str) -> None:
    acknowledge, start = _block(_rendered(locale), "actions")["elements"]
    assert acknowledge["action_id"] == "incident_acknowledge"
    assert acknowledge["value"] == "INC-0042"
    assert acknowledge["style"] == "primary"
    assert start["action_id"] == "incident_start_response"
    assert start["value"] == "INC-0042"
    assert set(start["confirm"]) == {"title", "text", "confirm", "deny"}


def test_rendered_english_message_shows_incident() -> None:
    message = _rendered("en")
    fields = [field["text"] for field in message["blocks"][2]["fields"]]
    assert _block(message, "header")["text"]["text"] == "CRITICAL · INC-0042 · HighErrorRate"
    assert fields[0] == "*Team*\npayments"
    assert fields[3] == "*Status*\nFiring"
    assert fields[4] == "*Started*\n<!date^1715678467^{date_short_pretty} {time}|2024-05-14 09:21 UTC>"
    assert _block(message, "context")["elements"][0]["text"] == (
        "Incident <https://incidents.example.com/incidents/INC-0042|INC-0042>"
    )


def test_rendered_german_message_is_translated() -> None:
    message = _rendered("de")
    labels = [field["text"].split("\n")[0] for field in message["blocks"][2]["fields"]]
    acknowledge, start = _block(message, "actions")["elements"]
    assert _block(message, "header")["text"]["text"] == "KRITISCH · INC-0042 · HighErrorRate"
    assert labels == ["*Team*", "*Dienst*", "*Schweregrad*", "*Status*", "*Beginn*"]
    assert message["blocks"][2]["fields"][3]["text"] == "*Status*\nAusgelöst"
    assert acknowledge["text"]["text"] == "Bestätigen"
    assert start["confirm"]["deny"]["text"] == "Abbrechen"


def test_alert_data_is_escaped_for_mrkdwn() -> None:
    summary = _block(_rendered("en"), "section")["text"]["text"]
    assert "&lt;b&gt; &amp; co" in summary
    assert "<b>" not in summary


def test_long_title_is_cut_to_header_limit() -> None:
    message = _rendered("de", {**SAMPLE, "title": "x" * 500})
    header = _block(message, "header")["text"]["text"]
    assert len(header) == slack_blocks.MAX_HEADER_TEXT
    assert header.endswith("…")
    assert len(message["text"]) <= slack_blocks.MAX_HEADER_TEXT


def test_missing_service_shows_dash() -> None:
    fields = _rendered("en", {**SAMPLE, "service": ""})["blocks"][2]["fields"]
    assert fields[1]["text"] == "*Service*\n–"


def test_every_template_compiles_in_sandbox() -> None:
    document = json.loads(slack_blocks.render(_ruleset()))
    environment = SandboxedEnvironment()
    assert set(document["messages"]) == {"en", "de"}
    for locale in ("en", "de"):
        for _, text in slack_blocks._strings(document["messages"][locale], ""):
            environment.parse(text)


def test_template_syntax_error_is_reported() -> None:
    message = slack_blocks.message("en", None)
    message["blocks"][0]["text"]["text"] = "{{ incident.title "
    problems = slack_blocks.validate({"en": message})
    assert [problem.pointer for problem in problems] == ["/messages/en/blocks/0/text/text"]


def test_long_button_text_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = {**slack_blocks._TEXTS["de"], "acknowledge": "B" * 76}
    monkeypatch.setitem(slack_blocks._TEXTS, "de", texts)
    with pytest.raises(TargetError, match="/messages/de/blocks/3/elements/0/text/text: has 76 characters"):
        slack_blocks.render(_ruleset())


def test_long_confirm_title_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = {**slack_blocks._TEXTS["en"], "confirm_title": "T" * 101}
    monkeypatch.setitem(slack_blocks._TEXTS, "en", texts)
    with pytest.raises(TargetError, match="confirm/title/text: has 101 characters; Slack allows at most 100"):
        slack_blocks.render(_ruleset())


def test_too_many_fields_are_reported() -> None:
    message = slack_blocks.message("en", None)
    message["blocks"][2]["fields"] *= 3
    problems = slack_blocks.validate({"en": message})
    assert [str(problem) for problem in problems] == ["/messages/en/blocks/2/fields: has 15 items; Slack allows at most 10"]


def test_incident_url_cannot_open_template_tag() -> None:
    message = slack_blocks.message("en", "https://incidents.example.com/{{x}}|y")
    text = message["blocks"][4]["elements"][0]["text"]
    assert "https://incidents.example.com/%7B%7Bx%7D%7D%7Cy/incidents/" in text


def test_context_without_incident_url_has_no_link() -> None:
    ruleset = _ruleset('settings { daemon_url "https://irules.example.com" }')
    document = json.loads(slack_blocks.render(ruleset))
    environment = SandboxedEnvironment()
    text = document["messages"]["en"]["blocks"][4]["elements"][0]["text"]
    assert environment.from_string(text).render(incident=SAMPLE) == "Incident INC-0042"


def test_project_without_slack_is_rejected() -> None:
    result = check_text('receiver chat { webhook "https://hooks.example.com/x" }\nroute { receiver chat }\n', "x.irules")
    with pytest.raises(TargetError, match="declares no `slack` app"):
        slack_blocks.render(result.ruleset())


def test_render_is_deterministic() -> None:
    first = slack_blocks.render(_ruleset())
    second = slack_blocks.render(_ruleset())
    assert first == second
    assert first.endswith("}\n")
    assert json.loads(first)["_generated"][0].startswith("Generated by irules")


def test_default_locale_follows_settings() -> None:
    ruleset = _ruleset('settings { daemon_url "https://irules.example.com" locale de }')
    assert json.loads(slack_blocks.render(ruleset))["default_locale"] == "de"
