"""Render `slack-manifest.yaml`: the Slack app manifest of the irules incident bot.

The manifest is validated before it is written, against the limits of
Slack's manifest schema 1.0.0 and against the rules that Slack enforces only
on its server. Those are the scopes that events and slash commands need, a
bot user when bot scopes are requested, optional scopes listed as required
too, and request URLs unless socket mode is on. A manifest that breaks these
rules fails at generation, not later when someone pastes it into Slack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from compiler import ir
from compiler.errors import TargetError
from targets._yaml import dump
from targets.header import comment_header

BOT_SCOPES = ["app_mentions:read", "channels:manage", "channels:read", "chat:write", "chat:write.public", "commands"]
# Bot events and the scope each one needs, as Slack's Events API documents them.
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
    "reaction_added": "reactions:read",
    "reaction_removed": "reactions:read",
}
_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_LONG_DESCRIPTION = (
    "irules turns alerts from Alertmanager, CloudWatch, Azure Monitor, Grafana and custom webhooks into incidents, "
    "notifies the owning team, escalates when nobody acknowledges, and runs approved runbooks. Use the slash command "
    "to create an incident, see its status or start a remediation, and the buttons on incident messages to acknowledge "
    "or start the response."
)


@dataclass(frozen=True, slots=True)
class ManifestProblem:
    """One violation of Slack's manifest rules, at a JSON pointer into the manifest."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer}: {self.message}"


def render(ruleset: ir.Ruleset) -> str:
    """Return the manifest as YAML.

    Raises:
        TargetError: the project declares no `slack` app, the app needs request URLs
            but `settings` has no `daemon_url`, or the manifest breaks one of Slack's rules.
    """
    document = manifest(ruleset)
    problems = validate(document)
    if problems:
        raise TargetError("invalid Slack manifest: " + "; ".join(str(problem) for problem in problems))
    return comment_header(ruleset) + dump(document)


def manifest(ruleset: ir.Ruleset) -> dict[str, Any]:
    """Return the manifest of the project's `slack` app as a mapping in Slack's key order."""
    slack = ruleset.slack
    if slack is None:
        raise TargetError("the project declares no `slack` app, so there is no Slack manifest to generate")
    daemon_url = ruleset.settings.daemon_url
    if not slack.socket_mode and not daemon_url:
        raise TargetError(
            "the Slack app needs request URLs for events, interactivity and its slash command, "
            "but `settings` has no `daemon_url`; set `daemon_url`, or `socket_mode true` in `slack`"
        )
    display: dict[str, Any] = {"name": slack.app_name, "description": slack.description, "long_description": _LONG_DESCRIPTION}
    if slack.background_color:
        display["background_color"] = slack.background_color
    settings: dict[str, Any] = {
        "event_subscriptions": {"bot_events": ["app_mention"]},
        "interactivity": {"is_enabled": True},
        "org_deploy_enabled": False,
        "socket_mode_enabled": slack.socket_mode,
        "token_rotation_enabled": False,
    }
    command: dict[str, Any] = {
        "command": slack.command,
        "description": "Create an incident, show its status or start a remediation",
        "usage_hint": "create <title> | status <id> | remediate <id>",
        "should_escape": False,
    }
    if not slack.socket_mode:
        assert daemon_url is not None, "checked above"
        base = daemon_url.rstrip("/")
        settings["event_subscriptions"] = {"request_url": f"{base}/slack/events", **settings["event_subscriptions"]}
        settings["interactivity"]["request_url"] = f"{base}/slack/interactivity"
        command["url"] = f"{base}/slack/commands"
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": display,
        "features": {
            "bot_user": {"display_name": slack.bot_name, "always_online": True},
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": settings,
    }


def validate(document: dict[str, Any]) -> list[ManifestProblem]:
    """Return every violation of Slack's manifest rules; an empty list means Slack accepts the manifest."""
    problems: list[ManifestProblem] = []
    _check_display(document.get("display_information", {}), problems)
    _check_features(document.get("features", {}), problems)
    _check_scopes(document, problems)
    _check_settings(document.get("settings", {}), problems)
    return problems


def _length(problems: list[ManifestProblem], pointer: str, text: object, low: int, high: int) -> None:
    if text is None:
        return
    if not isinstance(text, str):
        problems.append(ManifestProblem(pointer, "must be a string"))
    elif not low <= len(text) <= high:
        problems.append(ManifestProblem(pointer, f"has {len(text)} characters; Slack allows {low} to {high}"))


def _required(problems: list[ManifestProblem], pointer: str, value: object) -> bool:
    if value is None:
        problems.append(ManifestProblem(pointer, "is required"))
        return False
    return True


def _check_display(display: dict[str, Any], problems: list[ManifestProblem]) -> None:
    if _required(problems, "/display_information/name", display.get("name")):
        _length(problems, "/display_information/name", display["name"], 1, 35)
    _length(problems, "/display_information/description", display.get("description"), 1, 140)
    _length(problems, "/display_information/long_description", display.get("long_description"), 175, 4000)
    color = display.get("background_color")
    pointer = "/display_information/background_color"
    _length(problems, pointer, color, 4, 7)
    if isinstance(color, str) and 4 <= len(color) <= 7 and not _COLOR.fullmatch(color):
        problems.append(ManifestProblem(pointer, f"`{color}` must be a hex color, `#rgb` or `#rrggbb`"))


def _check_features(features: dict[str, Any], problems: list[ManifestProblem]) -> None:
    bot_user = features.get("bot_user")
    if bot_user is not None and _required(problems, "/features/bot_user/display_name", bot_user.get("display_name")):
        _length(problems, "/features/bot_user/display_name", bot_user["display_name"], 1, 80)
    commands = features.get("slash_commands")
    if commands is None:
        return
    if not 1 <= len(commands) <= 50:
        problems.append(
            ManifestProblem(
                "/features/slash_commands",
                f"has {len(commands)} items; Slack allows 1 to 50, so omit the key instead of leaving it empty",
            )
        )
    for index, command in enumerate(commands):
        _check_command(f"/features/slash_commands/{index}", command, problems)


def _check_command(pointer: str, command: dict[str, Any], problems: list[ManifestProblem]) -> None:
    text = command.get("command")
    if _required(problems, f"{pointer}/command", text):
        if not isinstance(text, str) or not text.startswith("/") or not 2 <= len(text) <= 32:
            problems.append(ManifestProblem(f"{pointer}/command", f"`{text}` must start with `/` and have 2 to 32 characters"))
    if _required(problems, f"{pointer}/description", command.get("description")):
        _length(problems, f"{pointer}/description", command["description"], 1, 2000)
    _length(problems, f"{pointer}/usage_hint", command.get("usage_hint"), 1, 1000)
    url = command.get("url")
    _length(problems, f"{pointer}/url", url, 1, 3000)
    if isinstance(url, str) and not url.startswith(("https://", "http://")):
        problems.append(ManifestProblem(f"{pointer}/url", f"`{url}` must be an http or https URL"))


def _check_scopes(document: dict[str, Any], problems: list[ManifestProblem]) -> None:
    scopes = document.get("oauth_config", {}).get("scopes", {})
    bot = scopes.get("bot", [])
    if len(bot) > 255:
        problems.append(ManifestProblem("/oauth_config/scopes/bot", f"has {len(bot)} scopes; Slack allows at most 255"))
    for index, scope in enumerate(bot):
        _length(problems, f"/oauth_config/scopes/bot/{index}", scope, 1, 50)
    for index, scope in enumerate(scopes.get("bot_optional", [])):
        if scope not in bot:
            problems.append(
                ManifestProblem(f"/oauth_config/scopes/bot_optional/{index}", f"`{scope}` must also be listed in `bot`")
            )

    features = document.get("features", {})
    if bot and "bot_user" not in features:
        problems.append(ManifestProblem("/features/bot_user", "is required when bot scopes are requested"))
    if features.get("slash_commands") and "commands" not in bot:
        problems.append(ManifestProblem("/oauth_config/scopes/bot", "slash commands need the `commands` scope"))
    events = document.get("settings", {}).get("event_subscriptions", {}).get("bot_events", [])
    for index, event in enumerate(events):
        scope = EVENT_SCOPES.get(event)
        if scope is not None and scope not in bot:
            pointer = f"/settings/event_subscriptions/bot_events/{index}"
            problems.append(ManifestProblem(pointer, f"event `{event}` needs the `{scope}` bot scope"))


def _check_settings(settings: dict[str, Any], problems: list[ManifestProblem]) -> None:
    events = settings.get("event_subscriptions")
    if events is not None:
        _length(problems, "/settings/event_subscriptions/request_url", events.get("request_url"), 1, 3500)
        if not settings.get("socket_mode_enabled") and not events.get("request_url"):
            problems.append(
                ManifestProblem("/settings/event_subscriptions/request_url", "is required unless socket mode is enabled")
            )
        bot_events = events.get("bot_events", [])
        if len(bot_events) > 100:
            problems.append(
                ManifestProblem(
                    "/settings/event_subscriptions/bot_events", f"has {len(bot_events)} events; Slack allows at most 100"
                )
            )
        for index, event in enumerate(bot_events):
            _length(problems, f"/settings/event_subscriptions/bot_events/{index}", event, 1, 50)
    interactivity = settings.get("interactivity")
    if interactivity is not None:
        _required(problems, "/settings/interactivity/is_enabled", interactivity.get("is_enabled"))
        _length(problems, "/settings/interactivity/request_url", interactivity.get("request_url"), 1, 3500)
