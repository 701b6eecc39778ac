"""Render `alertmanager.yml` from the IR, for Alertmanager 0.25 to 0.28.

Alertmanager loads its configuration strictly, so only keys that the
target version accepts are written:

- `msteams_configs` from 0.26, with an inline `webhook_url` only; its
  `webhook_url_file` from 0.27;
- webhook `url_file` from 0.26;
- quoted UTF-8 label names in matchers from 0.27.

Secrets appear only as `*_file` paths under `settings.secrets_dir`, never as
values. Some channels Alertmanager cannot deliver for the target version:
SMS, Teams before 0.26, a PagerDuty channel without a routing key, and a URL
kept in a secret before its `*_file` key exists. They are left to the irules
daemon, which receives every alert through its own webhook when
`settings.daemon_url` is set. Without it, rendering fails with a
`TargetError` instead of dropping the channel.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from compiler import ir
from compiler.amfeatures import TEAMS_SINCE, TEAMS_URL_FILE_SINCE, UTF8_LABELS_SINCE, WEBHOOK_URL_FILE_SINCE
from compiler.errors import TargetError
from targets._yaml import dump
from targets.header import comment_header

DAEMON_HOOK_PATH = "/hooks/alertmanager"
GROUP_BY_ALL = "..."

_CLASSIC_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Version = tuple[int, int]


def parse_version(text: str) -> Version:
    """Return `(major, minor)` of a version such as `0.27` or `0.27.1`."""
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def render(ruleset: ir.Ruleset) -> str:
    """Return the Alertmanager configuration for `ruleset` as YAML text.

    Raises:
        TargetError: the configuration would be rejected by the target Alertmanager,
            or a channel could be delivered neither by Alertmanager nor by the daemon.
    """
    version = parse_version(ruleset.settings.alertmanager_version)
    _check_email(ruleset.receivers, ruleset.settings)
    document: dict[str, Any] = {"global": _global(ruleset.settings)}
    document["route"] = _route(ruleset.route, version, parent=None)
    details = pagerduty_details(ruleset)
    hook = daemon_hook(ruleset)
    document["receivers"] = [_receiver(receiver, ruleset.settings, version, details, hook) for receiver in ruleset.receivers]
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


def _version_text(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


# ---------------------------------------------------------------- labels and matchers


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def require_label_name(name: str, version: Version) -> None:
    """Raise unless the target version accepts `name` as a label name.

    Raises:
        TargetError: `name` is not a classic Prometheus label name and the target is older than 0.27.
    """
    if _CLASSIC_LABEL.fullmatch(name) or (name and version >= UTF8_LABELS_SINCE):
        return
    raise TargetError(
        f"label name `{name}` needs Alertmanager {_version_text(UTF8_LABELS_SINCE)} or newer, "
        f"but the target is {_version_text(version)}; rename the label or raise `alertmanager_version`"
    )


def format_label_name(name: str, version: Version) -> str:
    """Return a label name for a matcher; names outside the classic charset are quoted (0.27 and newer)."""
    require_label_name(name, version)
    return name if _CLASSIC_LABEL.fullmatch(name) else _quote(name)


def format_matcher(matcher: ir.Matcher, version: Version) -> str:
    """Return a matcher in Alertmanager's syntax with the value always double-quoted."""
    return f"{format_label_name(matcher.name, version)}{matcher.op.value}{_quote(matcher.value)}"


def _label_list(names: list[str], version: Version) -> list[str]:
    for name in names:
        if name != GROUP_BY_ALL:
            require_label_name(name, version)
    return list(names)


# ---------------------------------------------------------------- global section and routes


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
    elif isinstance(settings.slack_api_url, str):
        section["slack_api_url"] = settings.slack_api_url
    return section


def _route(route: ir.Route, version: Version, *, parent: ir.Route | None) -> dict[str, Any]:
    """Return one route; a child repeats only the options that differ from what it inherits."""
    section: dict[str, Any] = {}
    if parent is None or route.receiver != parent.receiver:
        section["receiver"] = route.receiver
    if route.matchers:
        section["matchers"] = [format_matcher(matcher, version) for matcher in route.matchers]
    if parent is None or route.group_by != parent.group_by:
        section["group_by"] = _label_list(route.group_by, version)
    if route.continue_:
        section["continue"] = True
    for key in ("group_wait_s", "group_interval_s", "repeat_interval_s"):
        own = getattr(route, key)
        if parent is None or own != getattr(parent, key):
            section[key.removesuffix("_s")] = format_duration(own)
    # Time intervals are not inherited in Alertmanager, so each route lists its own.
    if route.mute_time_intervals:
        section["mute_time_intervals"] = list(route.mute_time_intervals)
    if route.active_time_intervals:
        section["active_time_intervals"] = list(route.active_time_intervals)
    if route.routes:
        section["routes"] = [_route(child, version, parent=route) for child in route.routes]
    return section


def _inhibit(rule: ir.Inhibit, version: Version) -> dict[str, Any]:
    section: dict[str, Any] = {
        "source_matchers": [format_matcher(matcher, version) for matcher in rule.source_matchers],
        "target_matchers": [format_matcher(matcher, version) for matcher in rule.target_matchers],
    }
    if rule.equal:
        section["equal"] = _label_list(rule.equal, version)
    return section


# ---------------------------------------------------------------- receivers


def pagerduty_details(ruleset: ir.Ruleset) -> dict[str, str]:
    """Return the `details` that carry the labels PagerDuty orchestration rules read, as Go templates.

    Alertmanager sends only its default details (`firing`, `num_firing`, ...) to
    PagerDuty. The orchestration rules in `pagerduty.json` read labels from
    `event.custom_details`, so each label they test is added as a detail
    holding the group's common value of that label.
    """
    names: set[str] = set()
    for rule in ruleset.pagerduty.rules:
        if rule.when is not None:
            names.update(_label_paths(rule.when))
    return {name: "{{ " + _common_label(name) + " }}" for name in sorted(names)}


def _common_label(name: str) -> str:
    """Return the Go template expression of a common label of the notified group."""
    if _CLASSIC_LABEL.fullmatch(name):
        return f".CommonLabels.{name}"
    return 'index .CommonLabels "' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label_paths(expr: ir.Expr) -> set[str]:
    if "path" in expr:
        root, *rest = expr["path"]
        if root == "label" and len(rest) == 1:
            return {rest[0]}
        return {"alertname"} if root == "alert" and rest == ["name"] else set()
    children = [value for key, value in expr.items() if key in {"and", "or", "list"}]
    nested = [item for group in children for item in group]
    nested += [expr[key] for key in ("not", "left", "right") if key in expr]
    return set().union(*(_label_paths(item) for item in nested))


def daemon_hook(ruleset: ir.Ruleset) -> dict[str, Any] | None:
    """Return the webhook config through which Alertmanager delivers to the irules daemon, or None without `daemon_url`.

    When the rules give `source alertmanager` a bearer token or basic credentials,
    Alertmanager sends them, reading the token or password from its file in the secrets
    folder. Alertmanager accepts only one of `authorization` and `basic_auth`, so with
    both declared the first one is sent. Alertmanager cannot compute an HMAC, so an
    `auth hmac` on that source is left to the checker to report.
    """
    settings = ruleset.settings
    if not settings.daemon_url:
        return None
    hook: dict[str, Any] = {"url": settings.daemon_url.rstrip("/") + DAEMON_HOOK_PATH, "send_resolved": True}
    source = next((source for source in ruleset.sources if source.name == "alertmanager"), None)
    methods = source.auth if source is not None else []
    credentials = next((auth for auth in methods if auth.kind in ("bearer", "basic") and auth.secret is not None), None)
    if credentials is None:
        return hook
    secret_file = _secret_file(settings, credentials.secret)
    if credentials.kind == "bearer":
        hook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": secret_file}}
    else:
        hook["http_config"] = {"basic_auth": {"username": credentials.user, "password_file": secret_file}}
    return hook


def delivered_by_alertmanager(channel: ir.Channel, receiver: str, settings: ir.Settings) -> bool:
    """Return whether the generated `alertmanager.yml` makes Alertmanager itself deliver this channel.

    The daemon leaves such channels alone for alerts that came through Alertmanager,
    so nobody is notified twice about one alert.
    """
    try:
        return _channel(channel, receiver, settings, parse_version(settings.alertmanager_version)) is not None
    except TargetError:
        return False


def _receiver(
    receiver: ir.Receiver, settings: ir.Settings, version: Version, details: dict[str, str], hook: dict[str, Any] | None
) -> dict[str, Any]:
    section: dict[str, Any] = {"name": receiver.name}
    configs: dict[str, list[dict[str, Any]]] = {}
    for channel in receiver.channels:
        rendered = _channel(channel, receiver.name, settings, version)
        if rendered is None:
            _require_daemon(receiver, channel, settings, version)
            continue
        kind, config = rendered
        if kind == "pagerduty_configs" and details:
            config["details"] = dict(details)
        configs.setdefault(kind, []).append(config)
    if hook is not None:
        configs.setdefault("webhook_configs", []).append(dict(hook))
    for kind in sorted(configs):
        section[kind] = configs[kind]
    return section


def _channel(channel: ir.Channel, receiver: str, settings: ir.Settings, version: Version) -> tuple[str, dict[str, Any]] | None:
    """Return the Alertmanager config of one channel, or None when only the daemon can deliver it."""
    resolved = {} if channel.send_resolved is None else {"send_resolved": channel.send_resolved}
    url = channel.url if channel.url is not None else channel.target
    match channel.kind:
        case "email" if isinstance(channel.target, str):
            return "email_configs", {"to": channel.target, **resolved}
        case "slack":
            return "slack_configs", {**_slack(channel, receiver, settings), **resolved}
        case "pagerduty" if channel.key is not None:
            return "pagerduty_configs", {"routing_key_file": _secret_file(settings, channel.key), **resolved}
        case "teams" if isinstance(url, str) and version >= TEAMS_SINCE:
            return "msteams_configs", {"webhook_url": url, **resolved}
        case "teams" if isinstance(url, ir.SecretRef) and version >= TEAMS_URL_FILE_SINCE:
            return "msteams_configs", {"webhook_url_file": _secret_file(settings, url), **resolved}
        case "webhook" if isinstance(url, str):
            return "webhook_configs", {"url": url, **resolved}
        case "webhook" if isinstance(url, ir.SecretRef) and version >= WEBHOOK_URL_FILE_SINCE:
            return "webhook_configs", {"url_file": _secret_file(settings, url), **resolved}
    return None


def _slack(channel: ir.Channel, receiver: str, settings: ir.Settings) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if isinstance(channel.target, str):
        config["channel"] = channel.target
    if isinstance(channel.url, ir.SecretRef):
        config["api_url_file"] = _secret_file(settings, channel.url)
    elif isinstance(channel.url, str):
        config["api_url"] = channel.url
    elif settings.slack_api_url is None:
        raise TargetError(
            f"receiver `{receiver}` has a `slack` channel without `url`, and `settings` has no `slack_api_url`; "
            "Alertmanager needs the URL of a Slack incoming webhook to post, so set `slack_api_url` in `settings` "
            'or `url secret("NAME")` on the channel',
            receiver=receiver,
            channel="slack",
        )
    return config


def _require_daemon(receiver: ir.Receiver, channel: ir.Channel, settings: ir.Settings, version: Version) -> None:
    """Raise unless the daemon's webhook is configured to deliver a channel that Alertmanager cannot."""
    if settings.daemon_url:
        return
    raise TargetError(
        f"receiver `{receiver.name}` has {_article(channel.kind)} `{channel.kind}` channel that {_daemon_reason(channel, version)}, "
        "and `settings` has no `daemon_url` through which the irules daemon could deliver it; "
        "set `daemon_url` in `settings`",
        receiver=receiver.name,
        channel=channel.kind,
    )


def _article(kind: str) -> str:
    return "an" if kind in {"email", "sms"} else "a"


def _daemon_reason(channel: ir.Channel, version: Version) -> str:
    target = _version_text(version)
    url = channel.url if channel.url is not None else channel.target
    match channel.kind:
        case "email":
            return "names no address"
        case "sms":
            return "Alertmanager cannot send"
        case "pagerduty":
            return "has no routing key, so only the daemon can page through its escalation policy"
        case "teams" if version < TEAMS_SINCE:
            return f"Alertmanager {target} cannot send (`msteams_configs` exists from 0.26)"
        case "teams" | "webhook" if isinstance(url, ir.SecretRef):
            return f"keeps its URL in a secret, which Alertmanager {target} cannot read from a file"
    return f"Alertmanager {target} cannot send"


def _check_email(receivers: list[ir.Receiver], settings: ir.Settings) -> None:
    """Raise when an email channel exists but the global SMTP settings lack a smarthost or a sender."""
    if settings.smtp is None:
        missing = "`settings` has no `smtp` server"
    elif not settings.smtp.sender:
        missing = "`smtp` in `settings` has no `from` address"
    else:
        return
    for receiver in receivers:
        if any(channel.kind == "email" for channel in receiver.channels):
            raise TargetError(
                f"receiver `{receiver.name}` has an `email` channel, but {missing}; Alertmanager needs a smarthost "
                'and a sender to send email, such as `smtp "smtp.example.com:587" from "alerts@example.com"`',
                receiver=receiver.name,
                channel="email",
            )


# ---------------------------------------------------------------- time intervals


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
