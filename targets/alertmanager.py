"""Render `alertmanager.yml` from the IR, for Alertmanager 0.25 and later.

Only keys the target version knows are written (Alertmanager loads YAML
strictly). Secrets appear only as `*_file` paths under the secrets folder;
channels Alertmanager cannot deliver for the target version (SMS, Teams
before 0.26, webhooks whose URL is a secret before 0.26) are left to the
irules daemon, which receives every alert through its own webhook.
"""

from __future__ import annotations

import posixpath
from typing import Any

from compiler import ir
from targets._yaml import dump
from targets.header import comment_header

DAEMON_HOOK_PATH = "/hooks/alertmanager"


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def render(ruleset: ir.Ruleset) -> str:
    """Return the Alertmanager configuration for `ruleset` as YAML text."""
    version = _version(ruleset.settings.alertmanager_version)
    document: dict[str, Any] = {"global": _global(ruleset.settings)}
    document["route"] = _route(ruleset.route, version, is_root=True)
    document["receivers"] = [_receiver(receiver, ruleset.settings, version) for receiver in ruleset.receivers]
    if ruleset.inhibit_rules:
        document["inhibit_rules"] = [_inhibit(rule, version) for rule in ruleset.inhibit_rules]
    if ruleset.time_intervals:
        document["time_intervals"] = [_time_interval(interval) for interval in ruleset.time_intervals]
    return comment_header(ruleset) + dump(document)


def format_duration(seconds: float) -> str:
    """Return a Prometheus duration such as `1h30m` or `500ms`; zero is `0s`."""
    milliseconds = round(seconds * 1000)
    if milliseconds == 0:
        return "0s"
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, milliseconds = divmod(milliseconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def format_label_name(name: str, version: tuple[int, int]) -> str:
    """Return a label name for a matcher; names outside the classic charset are quoted (0.27+)."""
    if (
        name
        and (name[0].isalpha() or name[0] in "_:")
        and all(char.isalnum() or char in "_:" for char in name)
        and name.isascii()
    ):
        return name
    return _quote(name)


def format_matcher(matcher: ir.Matcher, version: tuple[int, int]) -> str:
    """Return a matcher in Alertmanager's syntax with the value always double-quoted."""
    return f"{format_label_name(matcher.name, version)}{matcher.op.value}{_quote(matcher.value)}"


def _secret_file(settings: ir.Settings, secret: ir.SecretRef) -> str:
    return posixpath.join(settings.secrets_dir, secret.secret)


def _global(settings: ir.Settings) -> dict[str, Any]:
    section: dict[str, Any] = {"resolve_timeout": format_duration(settings.resolve_timeout_s)}
    smtp = settings.smtp
    if smtp is not None:
        section["smtp_smarthost"] = smtp.smarthost
        if smtp.sender:
            section["smtp_from"] = smtp.sender
        if smtp.username:
            section["smtp_auth_username"] = smtp.username
        if smtp.password is not None:
            section["smtp_auth_password_file"] = _secret_file(settings, smtp.password)
        if smtp.require_tls is not None:
            section["smtp_require_tls"] = smtp.require_tls
    if isinstance(settings.slack_api_url, ir.SecretRef):
        section["slack_api_url_file"] = _secret_file(settings, settings.slack_api_url)
    return section


def _route(route: ir.Route, version: tuple[int, int], *, is_root: bool = False, parent: ir.Route | None = None) -> dict[str, Any]:
    section: dict[str, Any] = {}
    if is_root or parent is None or route.receiver != parent.receiver:
        section["receiver"] = route.receiver
    if route.matchers:
        section["matchers"] = [format_matcher(matcher, version) for matcher in route.matchers]
    if is_root or parent is None or route.group_by != parent.group_by:
        section["group_by"] = list(route.group_by)
    if route.continue_:
        section["continue"] = True
    for key in ("group_wait_s", "group_interval_s", "repeat_interval_s"):
        own = getattr(route, key)
        if is_root or parent is None or own != getattr(parent, key):
            section[key[:-2]] = format_duration(own)
    if route.mute_time_intervals:
        section["mute_time_intervals"] = list(route.mute_time_intervals)
    if route.active_time_intervals:
        section["active_time_intervals"] = list(route.active_time_intervals)
    if route.routes:
        section["routes"] = [_route(child, version, parent=route) for child in route.routes]
    return section


def _receiver(receiver: ir.Receiver, settings: ir.Settings, version: tuple[int, int]) -> dict[str, Any]:
    section: dict[str, Any] = {"name": receiver.name}
    configs: dict[str, list[dict[str, Any]]] = {}
    for channel in receiver.channels:
        rendered = _channel(channel, settings, version)
        if rendered is not None:
            kind, config = rendered
            configs.setdefault(kind, []).append(config)
    if settings.daemon_url:
        hook = {"url": settings.daemon_url.rstrip("/") + DAEMON_HOOK_PATH, "send_resolved": True}
        configs.setdefault("webhook_configs", []).append(hook)
    for kind in sorted(configs):
        section[kind] = configs[kind]
    return section


def _channel(channel: ir.Channel, settings: ir.Settings, version: tuple[int, int]) -> tuple[str, dict[str, Any]] | None:
    resolved = {} if channel.send_resolved is None else {"send_resolved": channel.send_resolved}
    if channel.kind == "email" and isinstance(channel.target, str):
        return "email_configs", {"to": channel.target, **resolved}
    if channel.kind == "slack":
        config: dict[str, Any] = {}
        if isinstance(channel.target, str):
            config["channel"] = channel.target
        url = channel.url
        if isinstance(url, ir.SecretRef):
            config["api_url_file"] = _secret_file(settings, url)
        elif isinstance(url, str):
            config["api_url"] = url
        return "slack_configs", {**config, **resolved}
    if channel.kind == "pagerduty" and channel.key is not None:
        return "pagerduty_configs", {"routing_key_file": _secret_file(settings, channel.key), **resolved}
    if channel.kind == "teams" and version >= (0, 27):
        url = channel.url if channel.url is not None else channel.target
        if isinstance(url, ir.SecretRef):
            return "msteams_configs", {"webhook_url_file": _secret_file(settings, url), **resolved}
        if isinstance(url, str):
            return "msteams_configs", {"webhook_url": url, **resolved}
    if channel.kind == "webhook":
        url = channel.url if channel.url is not None else channel.target
        if isinstance(url, str):
            return "webhook_configs", {"url": url, **resolved}
        if isinstance(url, ir.SecretRef) and version >= (0, 26):
            return "webhook_configs", {"url_file": _secret_file(settings, url), **resolved}
    return None


def _inhibit(rule: ir.Inhibit, version: tuple[int, int]) -> dict[str, Any]:
    section: dict[str, Any] = {
        "source_matchers": [format_matcher(matcher, version) for matcher in rule.source_matchers],
        "target_matchers": [format_matcher(matcher, version) for matcher in rule.target_matchers],
    }
    if rule.equal:
        section["equal"] = list(rule.equal)
    return section


def _time_interval(interval: ir.TimeInterval) -> dict[str, Any]:
    return {"name": interval.name, "time_intervals": [_period(period) for period in interval.periods]}


def _minutes(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _period(period: ir.Period) -> dict[str, Any]:
    section: dict[str, Any] = {}
    if period.times:
        section["times"] = [
            {"start_time": _minutes(span.start_minute), "end_time": _minutes(span.end_minute)} for span in period.times
        ]
    for key in ("weekdays", "days_of_month", "months", "years"):
        values = getattr(period, key)
        if values:
            section[key] = list(values)
    if period.location:
        section["location"] = period.location
    return section
