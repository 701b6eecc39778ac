"""Channel checks: each channel of a team or receiver has the target and options its kind needs.

Also home of the URL checks that settings and services share: a URL must be
absolute http(s), and a URL in a plain string must not carry an access token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import parse_qsl, urlsplit

from compiler import ast
from compiler.checks.context import Context
from compiler.codes import Code
from compiler.diagnostics import Label

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_ADDRESS = re.compile(r"[^@\s<>,]+@[^@\s<>,]+")
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_\-]{20,}")
_SECRET_QUERY_KEYS = {"token", "key", "apikey", "api_key", "secret", "sig", "signature", "password", "access_token", "code"}

CODES = {
    "IR0311": Code(
        "invalid URL",
        "URLs in settings, services and channels must be absolute `http://` or `https://`\nURLs with a host.",
    ),
    "IR0316": Code(
        "option not allowed for this channel",
        "Channel options depend on the kind of channel: `template` and `send_resolved`\n"
        "apply to every kind; `key` and `escalation_policy` only to `pagerduty`; `url` only\n"
        "to `webhook`, `teams`, `apprise` and `slack` (a Slack incoming-webhook URL).",
    ),
    "IR0317": Code(
        "invalid channel target",
        "Each channel kind needs its own target: `slack` a channel `#name` or a user\n"
        "`@name`; `email` one or more addresses separated by commas; `sms` a number in\n"
        "E.164 form (`+` and 8 to 15 digits, such as `+4915112345678`); `webhook` and\n"
        "`teams` a URL, given once, as the target or with `url`; `apprise` an Apprise URL\n"
        "(such as `tgram://...`) in a secret. `pagerduty` takes no target: its integration\n"
        'key goes in `key secret("NAME")`.',
    ),
    "IR0318": Code(
        "PagerDuty key missing or written in clear",
        "A `pagerduty` channel needs the integration (routing) key of a PagerDuty service,\n"
        'given as `key secret("NAME")`, or an `escalation_policy` for the daemon to page\n'
        "through. The key is a credential: irules compiles a secret to a file reference\n"
        "(`routing_key_file`) and never writes its value into an artifact, so a key in a\n"
        "plain string is rejected.",
    ),
    "IR0319": Code(
        "token in a plain URL",
        "Webhook URLs of Teams, Slack and many services carry an access token in the path\n"
        "or the query. A URL written in a plain string ends up in the generated\n"
        'configuration and in version control. Write `secret("NAME")` instead; Alertmanager\n'
        "then reads the URL from a file (`url_file` from 0.26, `webhook_url_file` for Teams\n"
        "from 0.27).",
    ),
}


def _props(items: Iterable[object], *keys: str) -> Iterator[ast.Property]:
    for item in items:
        if isinstance(item, ast.Property) and item.key in keys:
            yield item


# ---------------------------------------------------------------- URLs


def check_url(context: Context, value: ast.Str, subject: str) -> bool:
    """Report `value` unless it is an absolute http(s) URL, and return whether it is one."""
    try:
        parts = urlsplit(value.value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and not re.search(r"\s", value.value)
    except ValueError:
        valid = False
    if not valid:
        context.sink.error(
            "IR0311",
            f"{subject} must be an absolute http or https URL",
            value.span,
            label="not an absolute http(s) URL",
            help="write the full URL, such as `https://alerts.example.com`",
        )
    return valid


def _looks_like_token(url: str) -> bool:
    parts = urlsplit(url)
    if parts.password:
        return True
    for key, item in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in _SECRET_QUERY_KEYS or _is_token(item):
            return True
    return any(_is_token(segment) for segment in re.split(r"[/@]", parts.path))


def _is_token(text: str) -> bool:
    return bool(_TOKEN_LIKE.fullmatch(text)) and any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def warn_plain_token(context: Context, value: ast.Str, what: str) -> None:
    """Warn when a URL written in a plain string seems to carry an access token."""
    if _looks_like_token(value.value):
        context.sink.warning(
            "IR0319",
            f"{what} looks like it holds an access token",
            value.span,
            label="written in clear",
            help='keep the URL in a secret, `secret("NAME")`, so that it never lands in a generated file',
        )


# ---------------------------------------------------------------- channels


_COMMON_OPTIONS = ("template", "send_resolved")
_CHANNEL_OPTIONS = {
    "email": _COMMON_OPTIONS,
    "slack": (*_COMMON_OPTIONS, "url"),
    "sms": _COMMON_OPTIONS,
    "pagerduty": (*_COMMON_OPTIONS, "key", "escalation_policy"),
    "teams": (*_COMMON_OPTIONS, "url"),
    "webhook": (*_COMMON_OPTIONS, "url"),
    "apprise": (*_COMMON_OPTIONS, "url"),
}


def check_channels(context: Context) -> None:
    for decl in context.project_decls():
        if isinstance(decl, (ast.Team, ast.Receiver)):
            for channel in decl.channels:
                _check_channel_options(context, channel)
                _CHANNEL_CHECKS[channel.kind](context, channel)


def _check_channel_options(context: Context, channel: ast.Channel) -> None:
    allowed = _CHANNEL_OPTIONS[channel.kind]
    for prop in channel.options:
        if prop.key not in allowed:
            listed = ", ".join(f"`{key}`" for key in allowed)
            context.sink.error(
                "IR0316",
                f"`{prop.key}` is not an option of `{channel.kind}` channels",
                prop.key_span,
                label=f"not allowed on `{channel.kind}`",
                help=f"`{channel.kind}` channels take {listed}",
            )


def _target_error(context: Context, channel: ast.Channel, message: str, label: str, help: str) -> None:
    span = channel.target.span if channel.target is not None else channel.kind_span
    context.sink.error("IR0317", message, span, label=label, help=help)


def _plain_target(context: Context, channel: ast.Channel, example: str) -> ast.Str | None:
    """Return the channel's target string, or report it missing or given as a secret."""
    target = channel.target
    if target is None:
        _target_error(context, channel, f"`{channel.kind}` channel needs a target", "no target given", f"write it as `{example}`")
        return None
    if isinstance(target, ast.Secret):
        _target_error(
            context,
            channel,
            f"the target of a `{channel.kind}` channel cannot be a secret",
            "secret here",
            f"write it as `{example}`",
        )
        return None
    return target


def _check_slack(context: Context, channel: ast.Channel) -> None:
    urls = list(_props(channel.options, "url"))
    for prop in urls:
        _check_plain_url(context, prop.args[0], "the Slack webhook URL")
    if channel.target is None and urls:
        return  # an incoming webhook posts to its own default channel
    target = _plain_target(context, channel, 'slack "#alerts"')
    if target is not None and target.value[:1] not in ("#", "@"):
        _target_error(
            context,
            channel,
            f"slack target `{target.value}` is neither a channel nor a user",
            "expected `#channel` or `@user`",
            f'write `"#{target.value.lstrip("#@")}"` for a channel or `"@{target.value.lstrip("#@")}"` for a user',
        )


def _check_email(context: Context, channel: ast.Channel) -> None:
    target = _plain_target(context, channel, 'email "oncall@example.com"')
    if target is not None and not is_address_list(target.value):
        _target_error(
            context,
            channel,
            f"`{target.value}` is not an email address",
            "expected an address",
            "write one address or several separated by commas, such as `oncall@example.com`",
        )


def is_address_list(text: str, *, single: bool = False) -> bool:
    """Tell whether `text` is one email address (`single`) or several separated by commas, bare or `Name <addr>`."""
    entries = [text] if single else text.split(",")
    for entry in entries:
        entry = entry.strip()
        named = re.fullmatch(r"[^<>]*<([^<>]+)>", entry)
        if not _ADDRESS.fullmatch(named.group(1) if named else entry):
            return False
    return True


def _check_sms(context: Context, channel: ast.Channel) -> None:
    target = _plain_target(context, channel, 'sms "+4915112345678"')
    if target is not None and not _E164.fullmatch(target.value):
        compact = re.sub(r"[\s\-/().]", "", target.value)
        hint = (
            f'write it without separators: `"{compact}"`'
            if _E164.fullmatch(compact)
            else "write `+`, the country code and the number: 8 to 15 digits in all"
        )
        _target_error(
            context, channel, f"`{target.value}` is not a phone number in E.164 form", "expected `+` and 8 to 15 digits", hint
        )


def _check_pagerduty(context: Context, channel: ast.Channel) -> None:
    if channel.target is not None:
        _target_error(
            context,
            channel,
            "`pagerduty` channels take no target",
            "unexpected target",
            'give the integration key as `key secret("NAME")`',
        )
    keys = list(_props(channel.options, "key"))
    if not keys and not any(_props(channel.options, "escalation_policy")):
        context.sink.error(
            "IR0318",
            "`pagerduty` channel names neither an integration key nor an escalation policy",
            channel.kind_span,
            label="nothing tells where to page",
            help='add `key secret("NAME")` with the routing key of the PagerDuty service, or `escalation_policy "PXXXXXX"`',
        )
    elif keys and isinstance(keys[0].args[0], ast.Str):
        context.sink.error(
            "IR0318",
            "the integration key of a `pagerduty` channel is written in clear",
            keys[0].args[0].span,
            label="a credential in a plain string",
            help='keep it in a secret: `key secret("PAGERDUTY_KEY")`',
        )


def _check_url_channel(context: Context, channel: ast.Channel) -> None:
    kind = channel.kind
    urls = [channel.target] if channel.target is not None else []
    urls += [prop.args[0] for prop in _props(channel.options, "url")]
    if not urls:
        _target_error(
            context,
            channel,
            f"`{kind}` channel needs a URL",
            "no URL given",
            f'write it as `{kind} secret("NAME")` or `{kind} "https://..."`',
        )
        return
    if len(urls) > 1:
        context.sink.error(
            "IR0317",
            f"`{kind}` channel gives its URL twice",
            urls[1].span,
            label="second URL",
            labels=(Label(urls[0].span, "first URL"),),
            help="keep one of them",
        )
    _check_plain_url(context, urls[0], f"the {kind} URL")


def _check_apprise(context: Context, channel: ast.Channel) -> None:
    """Require one Apprise URL, in a secret: Apprise URLs carry the service's credentials."""
    urls = [channel.target] if channel.target is not None else []
    urls += [prop.args[0] for prop in _props(channel.options, "url")]
    if len(urls) != 1:
        _target_error(
            context,
            channel,
            "`apprise` channel needs exactly one URL",
            "no URL given" if not urls else "URL given twice",
            'write it as `apprise secret("NAME")`, with the Apprise URL (such as `tgram://...`) in the secret',
        )
        return
    if not isinstance(urls[0], ast.Secret):
        context.sink.error(
            "IR0317",
            "the URL of an `apprise` channel must be a secret",
            urls[0].span,
            label="written in clear",
            help='Apprise URLs carry credentials: keep it in a secret, `apprise secret("NAME")`',
        )


def _check_plain_url(context: Context, url: ast.Str | ast.Secret, subject: str) -> None:
    if isinstance(url, ast.Str) and check_url(context, url, subject):
        warn_plain_token(context, url, subject)


_CHANNEL_CHECKS: dict[str, Callable[[Context, ast.Channel], None]] = {
    "slack": _check_slack,
    "email": _check_email,
    "sms": _check_sms,
    "pagerduty": _check_pagerduty,
    "teams": _check_url_channel,
    "webhook": _check_url_channel,
    "apprise": _check_apprise,
}
