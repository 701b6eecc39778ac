"""Value checks: every literal means what Alertmanager and the daemon will make of it.

Regexes compile with RE2 anchored as Alertmanager anchors them, label names
follow Prometheus' rule for the target Alertmanager version, durations, time
intervals, settings and secret names are valid, and a block sets each
property once. Channels (`channels.py`) and services (`services.py`) have
their own modules; their checks and codes are registered here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath

import re2

from compiler import ast, timeintervals
from compiler.amfeatures import UTF8_LABELS_SINCE
from compiler.checks import channels, services
from compiler.checks.amversion import SUPPORTED_VERSIONS, alertmanager_version, parse_version, version_text
from compiler.checks.context import Context
from compiler.codes import Code
from compiler.diagnostics import Label
from compiler.span import Span

LOCALES = ("en", "de")
# Alertmanager's own defaults, which routes inherit when nothing sets them.
DEFAULT_INTERVALS = {"group_interval": 300.0, "repeat_interval": 14400.0}

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SECRET_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_HOST_PORT = re.compile(r"[^\s:/]+:[0-9]{1,5}|\[[0-9a-fA-F:.]+\]:[0-9]{1,5}")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False

WILDCARD = "..."

CODES = {
    "IR0301": Code(
        "invalid regular expression",
        "Matchers with `=~` and `!~` take a regular expression in RE2 syntax, the dialect\n"
        "Alertmanager uses. Alertmanager anchors it at both ends, as `^(?:EXPR)$`, so it\n"
        "must match the whole label value. Lookarounds and backreferences do not exist in\n"
        "RE2. The message quotes RE2's reason.",
    ),
    "IR0302": Code(
        "invalid label name",
        "Label names follow Prometheus' rule: a letter or `_`, then letters, digits and `_`.\n"
        "`alert-name` is not a label name; write `alert_name`. Alertmanager 0.27 and newer\n"
        'also accept any UTF-8 name when it is quoted: `"alert-name" = "x"`. An empty name\n'
        "is never valid.",
    ),
    "IR0303": Code(
        "UTF-8 label name needs a newer Alertmanager",
        'A quoted label name such as `"foo.bar"` that is not a classic Prometheus name\n'
        "works only with Alertmanager 0.27 or newer. The compiler targets Alertmanager 0.25\n"
        'unless `settings { alertmanager_version "0.27" }` says otherwise. Raise the version\n'
        "when your Alertmanager runs 0.27 or newer, or rename the label.",
    ),
    "IR0304": Code(
        "`...` mixed with other labels in group_by",
        'In `group_by`, the entry `"..."` groups by every label, which turns grouping off.\n'
        'Alertmanager rejects it together with other label names. Keep either `"..."`\n'
        "alone or the list of labels.",
    ),
    "IR0305": Code(
        "label repeated in group_by",
        "A label appears twice in one `group_by` list. Alertmanager rejects the\nconfiguration; remove the repeat.",
    ),
    "IR0306": Code(
        "literal asterisk in an equality matcher",
        '`label = "*"` matches only alerts whose label is the one-character value `*`;\n'
        "`=` compares strings and knows no wildcards. To match any value write\n"
        '`label =~ ".*"` (which also matches a missing label) or `label =~ ".+"` (which\n'
        "needs the label to be set). To match every alert, write a route without matchers.",
    ),
    "IR0307": Code(
        "zero duration",
        "`group_interval`, `repeat_interval`, `resolve_timeout` and timeouts must be longer\n"
        "than zero. Alertmanager rejects a zero `group_interval` or `repeat_interval`, and a\n"
        "zero timeout would fail every step at once.",
    ),
    "IR0308": Code(
        "repeat_interval shorter than group_interval",
        "Alertmanager sends notifications only when a group is flushed, once per\n"
        "`group_interval`. A `repeat_interval` shorter than that cannot take effect: the\n"
        "notification repeats once per group interval. Set `repeat_interval` to at least\n"
        "the `group_interval` that applies to the route (its own, or the one it inherits).",
    ),
    "IR0309": Code(
        "invalid time interval entry",
        "Time interval fields take Alertmanager's formats: weekdays by full name in any\n"
        "case (`monday`, ranges `monday:friday`); times as `HH:MM-HH:MM` with two-digit\n"
        "hours, where `24:00` may only end a range; days of the month 1 to 31 or -1 to -31\n"
        "(counting from the end); months by name or number 1 to 12; years such as `2025`.\n"
        "Ranges join two values with `:` and must not run backwards. irules accepts one\n"
        'thing Alertmanager does not: a times entry such as `"22:00-06:00"` crosses\n'
        "midnight and becomes the two ranges `22:00-24:00` and `00:00-06:00`.",
    ),
    "IR0310": Code(
        "unknown time zone",
        "`location` and `timezone` take a zone name of the IANA time zone database, such as\n"
        "`Europe/Berlin`, `Asia/Seoul` or `UTC`. Abbreviations like `KST` or `PST` name no\n"
        "zone and are rejected by Alertmanager.",
    ),
    "IR0312": Code(
        "unsupported Alertmanager version",
        "`alertmanager_version` names the Alertmanager release the configuration is\n"
        "generated for. irules supports 0.25, 0.26, 0.27 and 0.28; without the setting it\n"
        "targets 0.25.",
    ),
    "IR0313": Code("unknown locale", "`locale` selects the language of built-in messages: `en` or `de`."),
    "IR0314": Code(
        "relative secrets folder",
        "`secrets_dir` is where Alertmanager and the daemon read secret files. Both may run\n"
        "in other working directories than the compiler, so the path must be absolute.",
    ),
    "IR0315": Code(
        "property set twice",
        "A block sets the same property twice, such as two `group_wait` in one route or two\n"
        "`tier` in one service. irules does not let the last one win silently; keep one.\n"
        "Several `settings` or `defaults` blocks count as one block.",
    ),
    "IR0320": Code(
        "invalid secret name",
        'Secret names, as in `secret("PAGERDUTY_KEY")`, are upper-case letters, digits and\n'
        "`_`, starting with a letter. They name a file in `secrets_dir` and an environment\n"
        "variable of the daemon, so both must be able to hold them.",
    ),
    "IR0326": Code(
        "invalid incident id format",
        "`incident_id_format` builds incident ids from `{number}`, the incident's running\n"
        "number, and optionally `{year}`, the year it opened; numbers restart each year\n"
        "when the format has `{year}`. A format spec pads the number:\n"
        '`"INC-{year}-{number:04d}"` gives `INC-2026-0042`. Other placeholders are unknown.',
    ),
    "IR0325": Code(
        "invalid SMTP setting",
        'The `smtp` setting takes the server as `host:port`, such as `"smtp.example.com:587"`,\n'
        "and `from` takes an email address.",
    ),
    **channels.CODES,
    **services.CODES,
}


# ---------------------------------------------------------------- helpers


def _props(items: Iterable[object], *keys: str) -> Iterator[ast.Property]:
    for item in items:
        if isinstance(item, ast.Property) and (not keys or item.key in keys):
            yield item


def _walk_routes(route: ast.Route) -> Iterator[ast.Route]:
    yield route
    for child in route.children:
        yield from _walk_routes(child)


def _inner_span(context: Context, string: ast.Str, start: int, end: int | None) -> Span:
    """Return the span of `string.value[start:end]` in the source, or the whole string when escapes blur offsets."""
    span = string.span
    source = context.project.sources.get(span.path)
    if source is None or end is None or end <= start or string.block:
        return span
    if source.text[span.start + 1 : span.end - 1] != string.value:
        return span
    return source.span(span.start + 1 + start, span.start + 1 + end)


# ---------------------------------------------------------------- matchers and labels


def _all_matchers(context: Context) -> Iterator[ast.Matcher]:
    for decl in context.project_decls():
        if isinstance(decl, ast.RouteDecl):
            for route in _walk_routes(decl.root):
                yield from route.matchers
        elif isinstance(decl, ast.Inhibit):
            yield from decl.source
            yield from decl.target
        elif isinstance(decl, ast.Service):
            for prop in _props(decl.items, "match"):
                yield from prop.args


def check_matcher_values(context: Context) -> None:
    for matcher in _all_matchers(context):
        value = matcher.value
        if value.single_quoted:
            context.sink.error(
                "IR0105",
                "single quotes do not delimit strings",
                value.span,
                label="written in single quotes",
                help=f'write the value in double quotes: `"{value.value}"`',
            )
        elif matcher.op in ("=~", "!~"):
            _check_regex(context, value)
        elif matcher.op == "=" and value.value == "*":
            context.sink.warning(
                "IR0306",
                f"`*` is a literal asterisk here, not a wildcard: only `{matcher.label.value}` equal to `*` matches",
                value.span,
                label="compared as plain text",
                help=f'write `{matcher.label.value} =~ ".*"` to match any value, or a route without matchers to match every alert',
            )


def _check_regex(context: Context, value: ast.Str) -> None:
    anchored = f"^(?:{value.value})$"
    try:
        re2.compile(anchored, _RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0].decode("utf-8", "replace") if error.args and isinstance(error.args[0], bytes) else str(error)
        reason = reason.removesuffix(f": {anchored}")
        context.sink.error(
            "IR0301",
            f"invalid regular expression: {reason}",
            value.span,
            label="RE2 cannot compile this",
            help="matchers use RE2 syntax and match the whole value, as `^(?:...)$`",
        )


def _label_positions(context: Context) -> Iterator[tuple[ast.LabelName, str]]:
    """Yield every label name the user wrote, with where it stands for messages."""
    for matcher in _all_matchers(context):
        yield matcher.label, "matcher"
    for items in _timing_blocks(context):
        for prop in _props(items, "group_by"):
            for label in prop.args[0].items:
                if not (label.quoted and label.value == WILDCARD):
                    yield label, "group_by"
    for decl in context.symbols.inhibits:
        if decl.equal is not None:
            for label in decl.equal.items:
                yield label, "inhibit `on` list"
    for test in context.symbols.tests:
        for item in test.items:
            if isinstance(item, ast.ScenarioEvent):
                for pair in item.labels:
                    yield pair.name, "test alert"
            elif item.key in ("alert", "also_firing"):
                for pair in item.pairs:
                    yield pair.name, "test alert"
            elif item.key == "expect group_by":
                for label in item.args[0].items:
                    if not (label.quoted and label.value == WILDCARD):
                        yield label, "test expectation"


def check_label_names(context: Context) -> None:
    version = alertmanager_version(context)
    for label, where in _label_positions(context):
        name = label.value
        if _LABEL_NAME.fullmatch(name):
            continue
        if label.quoted and name and _is_utf8(name):
            if version < UTF8_LABELS_SINCE:
                context.sink.error(
                    "IR0303",
                    f"label name `{name}` needs Alertmanager 0.27 or newer",
                    label.span,
                    label=f"not a classic label name, and the target is Alertmanager {version_text(version)}",
                    help=f'set `alertmanager_version "0.27"` in `settings` if your Alertmanager is that new, or write `{_classic(name)}`',
                )
            continue
        quoted_too = f', or quote it: `"{name}"`' if version >= UTF8_LABELS_SINCE and name and _is_utf8(name) else ""
        context.sink.error(
            "IR0302",
            f"invalid label name `{name}` in {where}",
            label.span,
            label="label names are letters, digits and `_`, not starting with a digit",
            help=f"write `{_classic(name)}`{quoted_too}",
        )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _classic(name: str) -> str:
    fixed = re.sub(r"[^a-zA-Z0-9_]", "_", name) or "_"
    return fixed if not fixed[0].isdigit() else "_" + fixed


def _timing_blocks(context: Context) -> Iterator[list[object]]:
    """Yield the items of every block that may hold timing options: defaults and each route."""
    for decl in context.symbols.defaults:
        yield decl.items
    for decl in context.symbols.routes:
        for route in _walk_routes(decl.root):
            yield route.items


def check_group_by(context: Context) -> None:
    for items in _timing_blocks(context):
        for prop in _props(items, "group_by"):
            labels = prop.args[0].items
            wildcards = [label for label in labels if label.quoted and label.value == WILDCARD]
            if wildcards and len(labels) > 1:
                context.sink.error(
                    "IR0304",
                    '`"..."` cannot be combined with other labels in group_by',
                    wildcards[0].span,
                    label="groups by every label",
                    help='keep only `"..."` to turn grouping off, or remove it to group by the listed labels',
                )
            seen: dict[str, ast.LabelName] = {}
            for label in labels:
                first = seen.setdefault(label.value, label)
                if first is not label and label.value != WILDCARD:
                    context.sink.error(
                        "IR0305",
                        f"label `{label.value}` appears twice in group_by",
                        label.span,
                        label="repeated here",
                        labels=(Label(first.span, "first listed here"),),
                        help="remove the repeat",
                    )


# ---------------------------------------------------------------- durations


def check_positive_durations(context: Context) -> None:
    for items in _timing_blocks(context):
        for prop in _props(items, "group_interval", "repeat_interval"):
            _require_positive(context, prop, prop.args[0])
    for settings in context.symbols.settings:
        for prop in _props(settings.items, "resolve_timeout"):
            _require_positive(context, prop, prop.args[0])
    for decl in context.project_decls():
        if isinstance(decl, (ast.Runbook, ast.Action)):
            for item in _runbook_items(decl):
                if (
                    isinstance(item, ast.Property)
                    and item.key in ("timeout", "approval")
                    and isinstance(item.args[-1], ast.Duration)
                ):
                    _require_positive(context, item, item.args[-1])
                elif isinstance(item, ast.StepKind) and item.kind == "approve":
                    _require_positive(context, item, item.args[-1])


def _steps(decl: ast.Runbook | ast.Action) -> Iterator[ast.Step]:
    for item in decl.items:
        if isinstance(item, ast.Step):
            yield item
        elif isinstance(item, ast.Parallel):
            yield from item.steps


def _runbook_items(decl: ast.Runbook | ast.Action) -> Iterator[object]:
    """Yield the items of a runbook or action and those of each of its steps."""
    yield from decl.items
    for step in _steps(decl):
        yield from step.items


def _require_positive(context: Context, owner: ast.Property | ast.StepKind, duration: ast.Duration) -> None:
    if duration.seconds > 0:
        return
    what = owner.key if isinstance(owner, ast.Property) else owner.kind
    context.sink.error(
        "IR0307",
        f"`{what}` cannot be zero",
        duration.span,
        label="must be longer than zero",
        help="give a positive duration such as `5m`",
    )


def check_repeat_interval(context: Context) -> None:
    inherited: dict[str, tuple[float, ast.Property | None]] = {key: (value, None) for key, value in DEFAULT_INTERVALS.items()}
    for decl in context.symbols.defaults:
        inherited = _check_interval_pair(context, decl.items, inherited)
    for decl in context.symbols.routes:
        _check_route_intervals(context, decl.root, inherited)


def _check_route_intervals(context: Context, route: ast.Route, inherited: dict) -> None:
    effective = _check_interval_pair(context, route.items, inherited)
    for child in route.children:
        _check_route_intervals(context, child, effective)


def _check_interval_pair(context: Context, items: list[object], inherited: dict) -> dict:
    """Warn when this block makes `repeat_interval` shorter than `group_interval`, and return the values it passes on."""
    own = {prop.key: prop for prop in _props(items, *DEFAULT_INTERVALS)}
    effective = dict(inherited)
    for key, prop in own.items():
        effective[key] = (prop.args[0].seconds, prop)
    (group, group_prop), (repeat, repeat_prop) = effective["group_interval"], effective["repeat_interval"]
    if not own or group <= 0 or repeat <= 0 or repeat >= group:
        return effective
    at = own.get("repeat_interval") or own["group_interval"]
    other = group_prop if at is repeat_prop else repeat_prop
    group_text = group_prop.args[0].text if group_prop else "5m"
    repeat_text = repeat_prop.args[0].text if repeat_prop else "4h"
    context.sink.warning(
        "IR0308",
        f"`repeat_interval` {repeat_text} is shorter than `group_interval` {group_text}",
        at.args[0].span,
        label="Alertmanager sends at most once per group interval",
        labels=(Label(other.args[0].span, f"`{other.key}` set here"),) if other is not None else (),
        help=f"set `repeat_interval` to {group_text} or more, because notifications cannot repeat more often than every {group_text}",
    )
    return effective


# ---------------------------------------------------------------- time intervals


def check_time_intervals(context: Context) -> None:
    for decl in context.project_decls():
        if not isinstance(decl, ast.TimeInterval):
            continue
        for period in decl.periods:
            for prop in period.items:
                if prop.key == "location":
                    _check_zone(context, prop.args[0])
                elif prop.key in timeintervals.FIELD_PARSERS:
                    for entry in prop.args[0].items:
                        _check_interval_entry(context, prop.key, entry)


def _check_interval_entry(context: Context, key: str, entry: ast.Str) -> None:
    try:
        timeintervals.FIELD_PARSERS[key](entry.value)
    except timeintervals.IntervalError as error:
        context.sink.error(
            "IR0309",
            error.message,
            _inner_span(context, entry, error.start, error.end),
            label=f"in `{key}`",
            help=error.help,
        )


def _check_zone(context: Context, value: ast.Str) -> None:
    try:
        timeintervals.check_location(value.value)
    except timeintervals.IntervalError as error:
        context.sink.error("IR0310", error.message, value.span, label="not an IANA time zone", help=error.help)


# ---------------------------------------------------------------- settings


_URL_SETTINGS = ("external_url", "incident_url", "daemon_url")


def check_settings(context: Context) -> None:
    for settings in context.symbols.settings:
        for prop in settings.items:
            argument = prop.args[0]
            if prop.key in _URL_SETTINGS:
                channels.check_url(context, argument, f"`{prop.key}`")
            elif prop.key == "slack_api_url" and isinstance(argument, ast.Str):
                if channels.check_url(context, argument, "`slack_api_url`"):
                    channels.warn_plain_token(context, argument, "the Slack webhook URL")
            elif prop.key == "secrets_dir" and not PurePosixPath(argument.value).is_absolute():
                context.sink.error(
                    "IR0314",
                    f"`secrets_dir` must be an absolute path, not `{argument.value}`",
                    argument.span,
                    label="relative path",
                    help="write the full path, such as `/etc/alertmanager/secrets`",
                )
            elif prop.key == "incident_id_format":
                _check_id_format(context, argument)
            elif prop.key == "locale" and argument.value not in LOCALES:
                choices = ", ".join(f"`{name}`" for name in LOCALES)
                context.sink.error(
                    "IR0313",
                    f"unknown locale `{argument.value}`",
                    argument.span,
                    label="not a supported language",
                    help=f"use one of {choices}",
                )
            elif prop.key == "timezone":
                _check_zone(context, argument)
            elif prop.key == "alertmanager_version":
                _check_version(context, argument)
            elif prop.key == "smtp":
                _check_smtp(context, prop)


def _check_version(context: Context, value: ast.Str) -> None:
    if parse_version(value.value) in SUPPORTED_VERSIONS:
        return
    choices = ", ".join(f"`{version_text(version)}`" for version in SUPPORTED_VERSIONS)
    context.sink.error(
        "IR0312",
        f"unsupported Alertmanager version `{value.value}`",
        value.span,
        label="not a version irules generates for",
        help=f"use one of {choices}",
    )


def _check_smtp(context: Context, prop: ast.Property) -> None:
    server = prop.args[0]
    if not _HOST_PORT.fullmatch(server.value):
        context.sink.error(
            "IR0325",
            f"SMTP server `{server.value}` needs a host and a port",
            server.span,
            label="expected `host:port`",
            help='write it as `"smtp.example.com:587"`',
        )
    for option in _props(prop.args[1:], "from"):
        if not channels.is_address_list(option.args[0].value, single=True):
            context.sink.error(
                "IR0325",
                f"`{option.args[0].value}` is not an email address",
                option.args[0].span,
                label="sender address expected",
                help="write an address such as `alerts@example.com`",
            )


# ---------------------------------------------------------------- properties set twice


def check_properties_set_once(context: Context) -> None:
    _report_repeats(context, [p for s in context.symbols.settings for p in s.items], "`settings`")
    _report_repeats(context, [p for d in context.symbols.defaults for p in d.items], "`defaults`")
    for decl in context.project_decls():
        for items, where, repeatable in _property_blocks(decl):
            _report_repeats(context, items, where, repeatable=repeatable)
        if isinstance(decl, ast.RouteDecl):
            for route in _walk_routes(decl.root):
                _check_route_receivers(context, route)


def _property_blocks(decl: ast.Decl) -> Iterator[tuple[list[object], str, frozenset[str]]]:
    """Yield each block of `decl` whose properties may appear only once, with its name for messages."""
    none: frozenset[str] = frozenset()
    name = decl.decl_name.value if decl.decl_name is not None else ""
    if isinstance(decl, ast.Settings):
        for prop in _props(decl.items, "smtp"):
            yield prop.args[1:], "`smtp`", none
    elif isinstance(decl, ast.Service):
        yield decl.items, f"service `{name}`", none
    elif isinstance(decl, ast.RouteDecl):
        for route in _walk_routes(decl.root):
            yield route.items, "this route", none
    elif isinstance(decl, (ast.Team, ast.Receiver)):
        if isinstance(decl, ast.Team):
            yield decl.items, f"team `{name}`", none
        for channel in decl.channels:
            yield channel.options, f"this `{channel.kind}` channel", none
    elif isinstance(decl, ast.TimeInterval):
        for period in decl.periods:
            yield period.items, "this period", none
    elif isinstance(decl, ast.Escalation):
        yield decl.items, f"escalation `{name}`", none
    elif isinstance(decl, ast.Slack):
        yield decl.items, "the `slack` block", frozenset({"command"})
    elif isinstance(decl, ast.PagerDuty):
        for rule in decl.items:
            if isinstance(rule, ast.PagerDutyRule):
                yield rule.items, f"pagerduty rule `{rule.title.value}`", frozenset({"annotate"})
    elif isinstance(decl, ast.Source):
        yield decl.items, f"source `{name}`", none
        for prop in _props(decl.items, "auth hmac"):
            yield prop.args[1:], "`auth hmac`", none
        for prop in _props(decl.items, "auth basic"):
            yield prop.args, "`auth basic`", none
    elif isinstance(decl, ast.Grouping):
        yield decl.items, f"this `{decl.kind}` block", none
    elif isinstance(decl, ast.SeverityDecl) and decl.fallback is not None:
        yield decl.fallback.options, "`else classify`", none
    elif isinstance(decl, (ast.Runbook, ast.Action)):
        yield from _runbook_blocks(decl, name)


def _runbook_blocks(decl: ast.Runbook | ast.Action, name: str) -> Iterator[tuple[list[object], str, frozenset[str]]]:
    yield decl.items, f"{decl.kind} `{name}`", frozenset()
    for step in _steps(decl):
        yield step.items, f"step `{step.name.value}`", frozenset()
    for item in _runbook_items(decl):
        if isinstance(item, ast.StepKind) and item.kind == "http":
            yield item.options, "this `http` step", frozenset({"header"})


def _report_repeats(context: Context, items: Iterable[object], where: str, *, repeatable: frozenset[str] = frozenset()) -> None:
    seen: dict[str, ast.Property] = {}
    for prop in _props(items):
        if prop.key in repeatable:
            continue
        first = seen.setdefault(prop.key, prop)
        if first is not prop:
            context.sink.error(
                "IR0315",
                f"`{prop.key}` is set twice in {where}",
                prop.key_span,
                label="set again here",
                labels=(Label(first.key_span, "first set here"),),
                help="keep one of them",
            )


def _check_route_receivers(context: Context, route: ast.Route) -> None:
    """Report a route that names its receiver both after `->` and with `receiver`."""
    props = list(_props(route.items, "receiver"))
    if props and route.receiver is not None and route.receiver is not props[0].args[0]:
        context.sink.error(
            "IR0315",
            "`receiver` is set twice in this route",
            props[0].key_span,
            label="set again here",
            labels=(Label(route.receiver.span, "first set here, after `->`"),),
            help="keep one of them",
        )


# ---------------------------------------------------------------- secrets


def _secrets(decl: ast.Decl) -> Iterator[ast.Secret]:
    """Yield the `secret(...)` references of a declaration, wherever the grammar allows one."""
    values: list[object] = []
    if isinstance(decl, (ast.Settings, ast.Slack, ast.Source)):
        values = [arg for prop in _props(decl.items) for arg in prop.args]
    elif isinstance(decl, (ast.Team, ast.Receiver)):
        for channel in decl.channels:
            values.append(channel.target)
            values.extend(arg for prop in channel.options for arg in prop.args)
    # Options such as `smtp ... password secret(...)` nest one property inside another.
    nested = [arg for value in values if isinstance(value, ast.Property) for arg in value.args]
    for value in values + nested:
        if isinstance(value, ast.Secret):
            yield value


def check_secret_names(context: Context) -> None:
    for decl in context.project_decls():
        for secret in _secrets(decl):
            name = secret.name
            if not _SECRET_NAME.fullmatch(name.value):
                suggestion = re.sub(r"[^A-Z0-9_]", "_", name.value.upper()).lstrip("_0123456789") or "NAME"
                context.sink.error(
                    "IR0320",
                    f"invalid secret name `{name.value}`",
                    name.span,
                    label="upper-case letters, digits and `_`, starting with a letter",
                    help=f'write `secret("{suggestion}")`',
                )


CHECKS = [
    check_matcher_values,
    check_label_names,
    check_group_by,
    check_positive_durations,
    check_repeat_interval,
    check_time_intervals,
    check_settings,
    check_properties_set_once,
    channels.check_channels,
    check_secret_names,
    services.check_services,
    services.check_service_cycles,
]


def _check_id_format(context: Context, argument: ast.Str) -> None:
    import string

    try:
        names = [name for _text, name, _spec, _conversion in string.Formatter().parse(argument.value) if name is not None]
        unknown = [name for name in names if name not in ("year", "number")]
        if unknown:
            problem = f"unknown placeholder `{{{unknown[0]}}}`; only `{{year}}` and `{{number}}` exist"
        elif "number" not in names:
            problem = "no `{number}` placeholder, so every incident would get the same id"
        else:
            argument.value.format(year=2026, number=42)
            return
    except (ValueError, IndexError) as error:
        problem = f"not a valid format: {error}"
    context.sink.error(
        "IR0326",
        f"invalid `incident_id_format`: {problem}",
        argument.span,
        label="cannot build incident ids from this",
        help='write it like `"INC-{year}-{number:04d}"`',
    )
