"""The Slack manifest target: Slack's schema limits and server-side rules, each reported at its JSON pointer."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from compiler import ir
from compiler.api import check_path, check_text
from compiler.errors import TargetError
from targets import slack_manifest
from targets.slack_manifest import validate
from tests.conftest import EXAMPLES

FIXTURES = Path(__file__).parent / "fixtures" / "slack"

Manifest = dict[str, Any]


def fixture_manifest() -> Manifest:
    return yaml.safe_load((FIXTURES / "manifest.yaml").read_text(encoding="utf-8"))


def pointers(document: Manifest) -> list[str]:
    return [problem.pointer for problem in validate(document)]


@pytest.mark.parametrize("name", ["manifest.yaml", "manifest.json"])
def test_fixture_manifest_is_valid(name: str) -> None:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    document = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    assert validate(document) == []


# ---------------------------------------------------------------- one rule per variant


def _set_name(document: Manifest) -> None:
    document["display_information"]["name"] = "Incident Router Notifications Bot Prod"  # 38 characters


def _set_description(document: Manifest) -> None:
    document["display_information"]["description"] = "x" * 156


def _empty_slash_commands(document: Manifest) -> None:
    document["features"]["slash_commands"] = []


def _drop_bot_user(document: Manifest) -> None:
    del document["features"]["bot_user"]


def _drop_app_mentions_scope(document: Manifest) -> None:
    document["oauth_config"]["scopes"]["bot"].remove("app_mentions:read")


def _add_message_im_event(document: Manifest) -> None:
    document["settings"]["event_subscriptions"]["bot_events"].append("message.im")


def _drop_request_url(document: Manifest) -> None:
    del document["settings"]["event_subscriptions"]["request_url"]


def _add_bot_optional(document: Manifest) -> None:
    document["oauth_config"]["scopes"]["bot_optional"] = ["files:write"]


def _drop_commands_scope(document: Manifest) -> None:
    document["features"]["slash_commands"] = [{"command": "/ack", "description": "Acknowledge"}]
    document["oauth_config"]["scopes"]["bot"].remove("commands")


def _command_without_slash(document: Manifest) -> None:
    document["features"]["slash_commands"][0]["command"] = "ack"


def _long_background_color(document: Manifest) -> None:
    document["display_information"]["background_color"] = "#1a2b3c4"


def _short_long_description(document: Manifest) -> None:
    document["display_information"]["long_description"] = "x" * 174


VARIANTS: list[tuple[Callable[[Manifest], None], str, str]] = [
    (_set_name, "/display_information/name", "has 38 characters; Slack allows 1 to 35"),
    (_set_description, "/display_information/description", "has 156 characters; Slack allows 1 to 140"),
    (
        _empty_slash_commands,
        "/features/slash_commands",
        "has 0 items; Slack allows 1 to 50, so omit the key instead of leaving it empty",
    ),
    (_drop_bot_user, "/features/bot_user", "is required when bot scopes are requested"),
    (
        _drop_app_mentions_scope,
        "/settings/event_subscriptions/bot_events/0",
        "event `app_mention` needs the `app_mentions:read` bot scope",
    ),
    (_add_message_im_event, "/settings/event_subscriptions/bot_events/1", "event `message.im` needs the `im:history` bot scope"),
    (_drop_request_url, "/settings/event_subscriptions/request_url", "is required unless socket mode is enabled"),
    (_add_bot_optional, "/oauth_config/scopes/bot_optional/0", "`files:write` must also be listed in `bot`"),
    (_drop_commands_scope, "/oauth_config/scopes/bot", "slash commands need the `commands` scope"),
    (_command_without_slash, "/features/slash_commands/0/command", "`ack` must start with `/` and have 2 to 32 characters"),
    (_long_background_color, "/display_information/background_color", "has 8 characters; Slack allows 4 to 7"),
    (_short_long_description, "/display_information/long_description", "has 174 characters; Slack allows 175 to 4000"),
]


@pytest.mark.parametrize(
    ("change", "pointer", "message"), VARIANTS, ids=[change.__name__.strip("_") for change, _, _ in VARIANTS]
)
def test_variant_yields_its_error(change: Callable[[Manifest], None], pointer: str, message: str) -> None:
    document = fixture_manifest()
    change(document)
    problems = validate(document)
    assert [problem.pointer for problem in problems] == [pointer]
    assert problems[0].message == message


def test_socket_mode_needs_no_request_url() -> None:
    document = fixture_manifest()
    _drop_request_url(document)
    document["settings"]["socket_mode_enabled"] = True
    assert validate(document) == []


def test_background_color_must_be_hex() -> None:
    document = fixture_manifest()
    document["display_information"]["background_color"] = "#12345g"
    assert pointers(document) == ["/display_information/background_color"]


def test_combined_bad_manifest_reports_all() -> None:
    document = {
        "display_information": {"name": "Incident Router Notifications Bot Prod", "description": "d" * 156},
        "features": {"slash_commands": []},
        "oauth_config": {"scopes": {"bot": ["chat:write"], "bot_optional": ["files:write"]}},
        "settings": {"event_subscriptions": {"bot_events": ["app_mention", "message.im"]}, "socket_mode_enabled": False},
    }
    assert sorted(pointers(document)) == sorted(
        [
            "/display_information/name",
            "/display_information/description",
            "/features/slash_commands",
            "/features/bot_user",
            "/oauth_config/scopes/bot_optional/0",
            "/settings/event_subscriptions/bot_events/0",
            "/settings/event_subscriptions/bot_events/1",
            "/settings/event_subscriptions/request_url",
        ]
    )


def test_problem_text_starts_with_pointer() -> None:
    document = fixture_manifest()
    _set_name(document)
    assert str(validate(document)[0]) == "/display_information/name: has 38 characters; Slack allows 1 to 35"


# ---------------------------------------------------------------- generated manifests


def example_rulesets() -> list[Any]:
    cases = []
    for folder in sorted(path for path in EXAMPLES.iterdir() if path.is_dir() and any(path.glob("*.irules"))):
        cases.append(pytest.param(folder, id=folder.name))
    return cases


@pytest.mark.parametrize("folder", example_rulesets())
def test_example_manifest_is_valid(folder: Path) -> None:
    ruleset = check_path(folder, None).ruleset()
    if ruleset.slack is None:
        with pytest.raises(TargetError, match="declares no `slack` app"):
            slack_manifest.render(ruleset)
        return
    document = yaml.safe_load(slack_manifest.render(ruleset))
    assert validate(document) == []
    assert document["display_information"]["name"] == ruleset.slack.app_name


def _slack_project(slack_block: str, settings: str = 'settings { daemon_url "https://irules.example.com/" }') -> ir.Ruleset:
    source = f'{settings}\n{slack_block}\nreceiver chat {{ webhook "https://hooks.example.com/x" }}\nroute {{ receiver chat }}\n'
    result = check_text(source, "x.irules")
    assert not result.has_errors, [item.message for item in result.diagnostics]
    return result.ruleset()


def test_generated_manifest_uses_daemon_url() -> None:
    document = slack_manifest.manifest(_slack_project('slack { app_name "Ops" }'))
    assert document["settings"]["event_subscriptions"]["request_url"] == "https://irules.example.com/slack/events"
    assert document["settings"]["interactivity"]["request_url"] == "https://irules.example.com/slack/interactivity"
    assert document["features"]["slash_commands"][0]["url"] == "https://irules.example.com/slack/commands"


def test_socket_mode_manifest_has_no_request_urls() -> None:
    document = slack_manifest.manifest(_slack_project("slack { socket_mode true }", settings=""))
    assert "request_url" not in document["settings"]["event_subscriptions"]
    assert "url" not in document["features"]["slash_commands"][0]
    assert validate(document) == []


def test_manifest_without_daemon_url_raises_target_error() -> None:
    with pytest.raises(TargetError, match="`settings` has no `daemon_url`"):
        slack_manifest.render(_slack_project('slack { app_name "Ops" }', settings=""))


def test_too_long_app_name_raises_target_error() -> None:
    ruleset = _slack_project('slack { app_name "Incident Router Notifications Bot Prod" }')
    with pytest.raises(TargetError) as raised:
        slack_manifest.render(ruleset)
    assert str(raised.value) == "invalid Slack manifest: /display_information/name: has 38 characters; Slack allows 1 to 35"


def test_validate_does_not_change_the_manifest() -> None:
    document = fixture_manifest()
    before = copy.deepcopy(document)
    validate(document)
    assert document == before
